//! Which of a group's statements a [`GroupRecorder`](super::recorder::GroupRecorder) can leave
//! out: those that would change nothing, because they ran before with the same values and no
//! other connection has written since.
//!
//! Most of what a new instance writes is not about the instance: its dataset (created on first
//! use), its patient, study and series attributes (upserts that write only when a value
//! changes), its series' memberships in its project and `admin` (inserted once). For the 300
//! instances of a series they are the same statements with the same values, each a no-op after
//! the first — but SQLite still plans, binds, looks the row up and compares, for each of six
//! statements per group. Each of these statements is *idempotent*: run again with the same
//! values on the row it left, it leaves the row as it is (the upserts set each column to
//! `COALESCE(new, old)`, and `COALESCE(new, COALESCE(new, old))` is `COALESCE(new, old)`; the
//! series attribute update also sets `pipeline_pending = 1`, which nothing but another
//! connection clears). So a repeat can be left out as long as nothing else wrote the row in
//! between.
//!
//! "Nothing else wrote" is SQLite's `PRAGMA data_version`: it changes for a connection
//! whenever *another* connection (of this process or any other) commits to the file, and not
//! for its own commits. The recorder reads it inside its write transaction (`BEGIN IMMEDIATE`:
//! no one else can commit until it ends); if it is not what it was at the recorder's last
//! commit, everything remembered is forgotten and every statement runs. The statements that
//! change something on every instance — the instance's insert, the series' counters, the
//! dataset membership's last arrival — always run.
//!
//! What is remembered is exact, not a hash: the values a statement is run with, each encoded
//! with its type and length one after the other, so two different rows never look the same.
//! The key is made from the very values bound to the statement (the list its parameters `$1`,
//! `$2`, … are bound from), all of them but those [`Idempotent::unread_parameters`] names —
//! its `now`, and the group's counters the series row carries but the attribute update does
//! not read. A value forgotten there only costs repeats, never a wrong one. A group's rows are
//! remembered only once it commits (a rolled-back group wrote nothing), and at most
//! [`MAX_REMEMBERED`] of them: past that everything is forgotten and runs again once.

use std::collections::HashSet;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

/// At most this many rows remembered (a few hundred bytes each: under 2 MiB in all); past it the
/// set starts again empty. A sender's rows are a handful per series.
pub(super) const MAX_REMEMBERED: usize = 4096;

/// The idempotent statements of a group, as [`Repeats::is_repeat`] tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Idempotent {
    /// `SQL_ENSURE_DATASET`: `$4` is `now`.
    EnsureDataset = 1,
    /// `SQL_UPSERT_PATIENT`: `$5` is `now`.
    UpsertPatient = 2,
    /// `SQL_UPSERT_STUDY`: `$11` is `now`.
    UpsertStudy = 3,
    /// The recorder's series attribute update over its series row: `$8` and `$9` are the
    /// group's counters (the update does not read them), `$15` is `now`.
    SeriesAttributes = 4,
    /// `SQL_ADD_PROJECT`: `$3` is `now`.
    AddProject = 5,
}

impl Idempotent {
    /// The parameters (numbered from 1) whose values are left out of the statement's key:
    /// those that differ from one instance to the next without changing what a repeat does.
    pub(super) fn unread_parameters(self) -> &'static [usize] {
        match self {
            Idempotent::EnsureDataset => &[4],
            Idempotent::UpsertPatient => &[5],
            Idempotent::UpsertStudy => &[11],
            Idempotent::SeriesAttributes => &[8, 9, 15],
            Idempotent::AddProject => &[3],
        }
    }
}

/// The rows a recorder's committed groups wrote, while no other connection has written.
#[derive(Debug, Default)]
pub(super) struct Repeats {
    /// `PRAGMA data_version` in the recorder's last committed group.
    data_version: Option<i64>,
    /// Rows written by committed groups since then, encoded.
    written: HashSet<Box<[u8]>>,
    /// Rows of the group in progress not in `written`, remembered if it commits.
    pending: Vec<Box<[u8]>>,
    /// Where a row is encoded to be looked up.
    scratch: Vec<u8>,
}

impl Repeats {
    /// A group begins, in a write transaction that read `data_version`: everything remembered
    /// is forgotten if another connection has committed since the last group.
    pub(super) fn begin(&mut self, data_version: i64) {
        self.pending.clear();
        if self.data_version != Some(data_version) {
            self.written.clear();
            self.data_version = Some(data_version);
        }
    }

    /// Whether `statement` ran with `values` (bound to its parameters `$1`, `$2`, … in this
    /// order) in a committed group since another connection last wrote — then it can be left
    /// out; if not, the row is remembered for when the group commits. A value that has no
    /// plain SQLite form (none of the recorder's) makes the row never a repeat.
    pub(super) fn is_repeat(
        &mut self,
        statement: Idempotent,
        values: &[&dyn ToSql],
    ) -> Result<bool, rusqlite::Error> {
        self.scratch.clear();
        self.scratch.push(statement as u8);
        let unread = statement.unread_parameters();
        for (index, value) in values.iter().enumerate() {
            if unread.contains(&(index + 1)) {
                continue;
            }
            match value.to_sql()? {
                ToSqlOutput::Borrowed(value) => encode(&mut self.scratch, value),
                ToSqlOutput::Owned(value) => encode(&mut self.scratch, ValueRef::from(&value)),
                _ => return Ok(false),
            }
        }
        if self.written.contains(self.scratch.as_slice()) {
            return Ok(true);
        }
        self.pending.push(self.scratch.as_slice().into());
        Ok(false)
    }

    /// The group committed: its rows are remembered.
    pub(super) fn committed(&mut self) {
        if self.written.len() + self.pending.len() > MAX_REMEMBERED {
            self.written.clear();
        }
        self.written.extend(self.pending.drain(..));
    }

    /// The group was rolled back: its rows are not remembered.
    pub(super) fn rolled_back(&mut self) {
        self.pending.clear();
    }
}

/// One value, its type first and, for text and blobs, its length before its bytes.
fn encode(key: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => key.push(0),
        ValueRef::Integer(integer) => {
            key.push(1);
            key.extend_from_slice(&integer.to_le_bytes());
        }
        ValueRef::Real(real) => {
            key.push(2);
            key.extend_from_slice(&real.to_bits().to_le_bytes());
        }
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            key.push(if matches!(value, ValueRef::Text(_)) {
                3
            } else {
                4
            });
            key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            key.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_repeat(repeats: &mut Repeats, statement: Idempotent, values: &[&dyn ToSql]) -> bool {
        repeats.is_repeat(statement, values).unwrap()
    }

    #[test]
    fn a_row_is_a_repeat_only_after_its_group_committed_and_while_nothing_else_wrote() {
        let mut repeats = Repeats::default();
        let row: [&dyn ToSql; 3] = [&"1.2.3", &Some("CT"), &Some(3)];
        repeats.begin(7);
        assert!(!is_repeat(&mut repeats, Idempotent::SeriesAttributes, &row));
        repeats.rolled_back();
        repeats.begin(7);
        assert!(
            !is_repeat(&mut repeats, Idempotent::SeriesAttributes, &row),
            "rolled back"
        );
        repeats.committed();
        repeats.begin(7);
        assert!(is_repeat(&mut repeats, Idempotent::SeriesAttributes, &row));
        assert!(
            !is_repeat(&mut repeats, Idempotent::UpsertStudy, &row),
            "another statement"
        );
        repeats.committed();
        repeats.begin(8);
        assert!(
            !is_repeat(&mut repeats, Idempotent::SeriesAttributes, &row),
            "another connection wrote"
        );
    }

    #[test]
    fn rows_that_differ_anywhere_never_look_the_same() {
        let mut repeats = Repeats::default();
        repeats.begin(1);
        let none: Option<&str> = None;
        let rows: [&[&dyn ToSql]; 8] = [
            &[&"ab", &Some("c")],
            &[&"a", &Some("bc")],
            &[&"abc", &none],
            &[&"abc", &Some("")],
            &[&"abc", &Some(0)],
            &[&"abc", &Some(0.0)],
            &[&"abc", &b"".to_vec()],
            &[&"abc"],
        ];
        for row in rows {
            assert!(!is_repeat(&mut repeats, Idempotent::UpsertPatient, row));
        }
        repeats.committed();
        repeats.begin(1);
        for row in rows {
            assert!(is_repeat(&mut repeats, Idempotent::UpsertPatient, row));
        }
    }

    #[test]
    fn only_the_unread_parameters_are_left_out_of_the_key() {
        let mut repeats = Repeats::default();
        repeats.begin(1);
        // The series row: `$8`, `$9` (counters) and `$15` (`now`) are not read.
        let row = |instance_count: i64, study: &'static str, now: &'static str| {
            let mut row: Vec<Box<dyn ToSql>> = (1..=15)
                .map(|n| Box::new(format!("v{n}")) as Box<dyn ToSql>)
                .collect();
            row[1] = Box::new(study);
            row[7] = Box::new(instance_count);
            row[8] = Box::new(instance_count * 500);
            row[14] = Box::new(now);
            row
        };
        let first = row(1, "1.2", "t1");
        let refs: Vec<&dyn ToSql> = first.iter().map(|v| v.as_ref()).collect();
        assert!(!is_repeat(
            &mut repeats,
            Idempotent::SeriesAttributes,
            &refs
        ));
        repeats.committed();
        repeats.begin(1);
        let counters_and_now = row(4, "1.2", "t2");
        let refs: Vec<&dyn ToSql> = counters_and_now.iter().map(|v| v.as_ref()).collect();
        assert!(is_repeat(&mut repeats, Idempotent::SeriesAttributes, &refs));
        let study = row(1, "1.3", "t1");
        let refs: Vec<&dyn ToSql> = study.iter().map(|v| v.as_ref()).collect();
        assert!(!is_repeat(
            &mut repeats,
            Idempotent::SeriesAttributes,
            &refs
        ));
    }

    #[test]
    fn the_remembered_rows_are_bounded() {
        let mut repeats = Repeats::default();
        let keys: Vec<String> = (0..MAX_REMEMBERED + 1).map(|i| i.to_string()).collect();
        repeats.begin(1);
        for key in &keys {
            assert!(!is_repeat(
                &mut repeats,
                Idempotent::AddProject,
                &[key as &dyn ToSql]
            ));
            repeats.committed();
            repeats.begin(1);
        }
        assert!(repeats.written.len() <= MAX_REMEMBERED);
        assert!(is_repeat(
            &mut repeats,
            Idempotent::AddProject,
            &[&keys[MAX_REMEMBERED]]
        ));
    }
}
