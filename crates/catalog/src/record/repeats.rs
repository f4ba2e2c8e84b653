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
//! What is remembered is exact, not a hash: each statement's values (its `now` aside) encoded
//! one after the other with their lengths, so two different rows never look the same. A
//! group's rows are remembered only once it commits (a rolled-back group wrote nothing), and at
//! most [`MAX_REMEMBERED`] of them: past that everything is forgotten and runs again once.

use std::collections::HashSet;

/// At most this many rows remembered (a few hundred bytes each: under 2 MiB in all); past it the
/// set starts again empty. A sender's rows are a handful per series.
pub(super) const MAX_REMEMBERED: usize = 4096;

/// The idempotent statements of a group, as [`Repeats::is_repeat`] tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Idempotent {
    EnsureDataset = 1,
    UpsertPatient = 2,
    UpsertStudy = 3,
    SeriesAttributes = 4,
    AddProject = 5,
}

/// One value of a remembered row.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value<'a> {
    Text(Option<&'a str>),
    Integer(Option<i64>),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Value::Text(Some(text))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(text: Option<&'a str>) -> Self {
        Value::Text(text)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(integer: Option<i64>) -> Self {
        Value::Integer(integer)
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

    /// Whether `statement` ran with `values` in a committed group since another connection
    /// last wrote (then it can be left out); if not, the row is remembered for when the group
    /// commits.
    pub(super) fn is_repeat(&mut self, statement: Idempotent, values: &[Value<'_>]) -> bool {
        self.scratch.clear();
        self.scratch.push(statement as u8);
        for value in values {
            match value {
                Value::Text(None) => self.scratch.push(0),
                Value::Integer(None) => self.scratch.push(3),
                Value::Text(Some(text)) => {
                    self.scratch.push(1);
                    self.scratch
                        .extend_from_slice(&(text.len() as u64).to_le_bytes());
                    self.scratch.extend_from_slice(text.as_bytes());
                }
                Value::Integer(Some(integer)) => {
                    self.scratch.push(2);
                    self.scratch.extend_from_slice(&integer.to_le_bytes());
                }
            }
        }
        if self.written.contains(self.scratch.as_slice()) {
            return true;
        }
        self.pending.push(self.scratch.as_slice().into());
        false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_a_repeat_only_after_its_group_committed_and_while_nothing_else_wrote() {
        let mut repeats = Repeats::default();
        let row = [
            Value::from("1.2.3"),
            Value::from(Some("CT")),
            Value::from(Some(3)),
        ];
        repeats.begin(7);
        assert!(!repeats.is_repeat(Idempotent::SeriesAttributes, &row));
        repeats.rolled_back();
        repeats.begin(7);
        assert!(
            !repeats.is_repeat(Idempotent::SeriesAttributes, &row),
            "rolled back"
        );
        repeats.committed();
        repeats.begin(7);
        assert!(repeats.is_repeat(Idempotent::SeriesAttributes, &row));
        assert!(
            !repeats.is_repeat(Idempotent::UpsertStudy, &row),
            "another statement"
        );
        repeats.committed();
        repeats.begin(8);
        assert!(
            !repeats.is_repeat(Idempotent::SeriesAttributes, &row),
            "another connection wrote"
        );
    }

    #[test]
    fn rows_that_differ_anywhere_never_look_the_same() {
        let mut repeats = Repeats::default();
        repeats.begin(1);
        let rows: [&[Value]; 7] = [
            &[Value::from("ab"), Value::from(Some("c"))],
            &[Value::from("a"), Value::from(Some("bc"))],
            &[Value::from("abc"), Value::Text(None)],
            &[Value::from("abc"), Value::Integer(None)],
            &[Value::from("abc"), Value::from(Some(""))],
            &[Value::from("abc"), Value::from(Some(0))],
            &[Value::from("abc")],
        ];
        for row in rows {
            assert!(!repeats.is_repeat(Idempotent::UpsertPatient, row));
        }
        repeats.committed();
        repeats.begin(1);
        for row in rows {
            assert!(repeats.is_repeat(Idempotent::UpsertPatient, row));
        }
    }

    #[test]
    fn the_remembered_rows_are_bounded() {
        let mut repeats = Repeats::default();
        let keys: Vec<String> = (0..MAX_REMEMBERED + 1).map(|i| i.to_string()).collect();
        repeats.begin(1);
        for key in &keys {
            assert!(!repeats.is_repeat(Idempotent::AddProject, &[Value::from(key.as_str())]));
            repeats.committed();
            repeats.begin(1);
        }
        assert!(repeats.written.len() <= MAX_REMEMBERED);
        assert!(repeats.is_repeat(
            Idempotent::AddProject,
            &[Value::from(keys[MAX_REMEMBERED].as_str())]
        ));
    }
}
