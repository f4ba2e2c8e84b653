//! SQLite on a file: new instances recorded by a thread of the catalog's own, on a connection
//! of its own.
//!
//! sqlx runs every SQLite connection on a worker thread of its own: each call is handed to it
//! and each statement's result handed back, and the group commit of `record.rs` adds a task
//! of its own and a hand-off of the write lock. Measured into packs with four senders
//! (docs/performance.md, session 18): recording took 0.4 ms of CPU and 13 context switches
//! per instance, most of it those hand-offs, not SQLite. Here one thread owns a `rusqlite`
//! connection to the catalog's file; callers send it their record and wait for its answer;
//! it takes every record waiting (the group), holds the catalog's write lock (so it never
//! writes beside the sqlx writer), and records them with the statements of the group path
//! ([`SQL_SQLITE_RECORD_NEW_STATEMENTS`], prepared once) in one transaction: one wake of the
//! thread per group and one of each caller.
//!
//! Only the common case is done here: every instance of the group new. Anything else — an
//! instance already recorded, an unknown project, any error at all — rolls the group back,
//! and each caller takes the careful way ([`crate::Catalog::record_instance_with`]'s group
//! commit over sqlx), which decides exactly as before. The group is committed with
//! `synchronous = FULL` (the WAL synced) unless every record in it is
//! [`Durability::Deferred`].
//!
//! Why a second SQLite library: sqlx 0.9 does not give a connection's handle through its
//! `Any` driver, and its SQLite connections only run on their worker threads. `rusqlite`
//! 0.39 is built on the same `libsqlite3-sys` (0.37), so both use the one bundled SQLite.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::AnyConnection;
use tokio::sync::{oneshot, Mutex};

use super::group::{RecordNewParams, SQL_SQLITE_RECORD_NEW_STATEMENTS};
use super::{trace_recorded, Keys, MAX_GROUP_COMMIT};
use crate::{Durability, InstanceRecord, RecordOutcome};

/// How long the committer's connection waits for a lock held by another process (the same
/// as the pool's connections, `SQLITE_CONNECTION_PRAGMAS`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One record handed to the committer, and where its answer goes: whether it was recorded
/// (as new); if not, nothing of it was.
struct Job {
    rec: InstanceRecord,
    keys: Keys,
    durability: Durability,
    reply: oneshot::Sender<bool>,
}

enum Message {
    Record(Box<Job>),
    Stop,
}

/// The handle of the committer thread. Dropping every handle (or [`Committer::stop`]) ends it.
pub(crate) struct Committer {
    sender: mpsc::Sender<Message>,
    /// Instances recorded here so far.
    recorded: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Opens a connection to the catalog at `path` (already set up) and starts the thread.
    pub(crate) fn start(
        path: &Path,
        write_lock: Arc<Mutex<Option<AnyConnection>>>,
    ) -> Result<Committer, rusqlite::Error> {
        let connection = open(path)?;
        let (sender, receiver) = mpsc::channel();
        let recorded = Arc::new(AtomicU64::new(0));
        let counted = recorded.clone();
        let thread = std::thread::Builder::new()
            .name("catalog-committer".into())
            .spawn(move || run(connection, receiver, write_lock, &counted))
            .map_err(|e| {
                rusqlite::Error::ToSqlConversionFailure(
                    format!("cannot start the catalog's committer thread: {e}").into(),
                )
            })?;
        Ok(Committer {
            sender,
            recorded,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Records `rec` as a new instance, with the records of everyone else waiting. Whether it
    /// was; if not (already recorded, or anything failed), nothing of it was and the caller
    /// takes the careful way.
    pub(super) async fn record_new(
        &self,
        rec: &InstanceRecord,
        keys: &Keys,
        durability: Durability,
    ) -> bool {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            rec: rec.clone(),
            keys: keys.clone(),
            durability,
            reply,
        };
        if self.sender.send(Message::Record(Box::new(job))).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Instances recorded here so far.
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Ends the thread after the group it is recording and closes its connection; records
    /// sent after are not recorded here.
    pub(crate) async fn stop(&self) {
        let _ = self.sender.send(Message::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    Ok(connection)
}

/// The thread: a group at a time, until stopped or every handle is gone.
fn run(
    connection: Connection,
    receiver: mpsc::Receiver<Message>,
    write_lock: Arc<Mutex<Option<AnyConnection>>>,
    recorded_so_far: &AtomicU64,
) {
    let mut synchronous = Synchronous::Full;
    loop {
        let Ok(Message::Record(first)) = receiver.recv() else {
            return;
        };
        let mut group = vec![*first];
        let mut stop = false;
        while group.len() < MAX_GROUP_COMMIT {
            match receiver.try_recv() {
                Ok(Message::Record(job)) => group.push(*job),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let recorded = {
            // Never beside the sqlx writer (nor a sync's checkpoint).
            let _lock = write_lock.blocking_lock();
            match record_group(&connection, &group, &mut synchronous) {
                Ok(()) => true,
                Err(e) => {
                    if !is_unique_violation(&e) {
                        tracing::debug!(error = %e, instances = group.len(),
                            "the committer's group failed; each goes the careful way");
                    }
                    false
                }
            }
        };
        if recorded {
            recorded_so_far.fetch_add(group.len() as u64, Ordering::Relaxed);
        }
        for job in group {
            if recorded {
                trace_recorded(&job.rec, &RecordOutcome::Stored);
            }
            let _ = job.reply.send(recorded);
        }
        if stop {
            return;
        }
    }
}

/// The connection's `synchronous` setting, as last set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// Every commit syncs the WAL.
    Full,
    /// Commits do not sync the WAL (deferred records only; see [`Durability::Deferred`]).
    Normal,
}

/// The group in one transaction; on any error it is rolled back.
fn record_group(
    connection: &Connection,
    group: &[Job],
    synchronous: &mut Synchronous,
) -> Result<(), rusqlite::Error> {
    let wanted = if group.iter().all(|j| j.durability == Durability::Deferred) {
        Synchronous::Normal
    } else {
        Synchronous::Full
    };
    if wanted != *synchronous {
        let value = match wanted {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        connection.pragma_update(None, "synchronous", value)?;
        *synchronous = wanted;
    }
    let params = RecordNewParams::of_records(group.iter().map(|j| (&j.rec, &j.keys)))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))?;
    let now = crate::now();
    connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let written = (|| {
        for sql in SQL_SQLITE_RECORD_NEW_STATEMENTS {
            let mut statement = connection.prepare_cached(sql)?;
            for index in 1..=statement.parameter_count() {
                let value = statement
                    .parameter_name(index)
                    .and_then(|name| name.strip_prefix('$'))
                    .and_then(|number| number.parse().ok())
                    .and_then(|number| params.parameter(number, &now))
                    .ok_or(rusqlite::Error::InvalidParameterCount(
                        index,
                        statement.parameter_count(),
                    ))?;
                statement.raw_bind_parameter(index, value)?;
            }
            statement.raw_execute()?;
        }
        connection.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    })();
    if written.is_err() && !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    written
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}
