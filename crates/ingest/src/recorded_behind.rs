//! Recording behind the packs: a packed instance whose sender can be answered once its pack
//! record is durable ([`Ingestor::finish_durable`]) is recorded in the catalog afterwards, by
//! a thread of its own, together with whatever else arrived within [`LINGER`] — one
//! transaction for several instances even from a lone sender, whose instances otherwise each
//! commit alone, and no commit between a group's `fdatasync` and its answers. On SQLite on a
//! file a batch goes through the catalog's [`GroupRecorder`]; elsewhere (PostgreSQL) its
//! instances are handed to the catalog at once, whose group commit takes them together
//! (`Catalog::record_instance_with`): one transaction, one WAL flush of the database's, and
//! none of its round trips between a record's `fdatasync` and its answer.
//!
//! Measured (session 30, `bench/ingest-ab.sh`, seven paired rounds against the pack writer
//! committing each group before its answers): from one sender 1.33× the images per second
//! at 0.66× the CPU per instance, from four 1.10× at 0.87× (docs/performance.md). The thread
//! sleeps through the linger rather than waking at each arrival (woken so, it gained nothing
//! from one sender). What a sender sees: its instance is durable when answered
//! (its record is synced; after a crash it is recorded again from the record), and findable a
//! few milliseconds later; the association waits for all of its instances to be recorded
//! before it answers the release (`radport_dimse`), so a finished `dcmsend` finds everything.
//!
//! Invariants:
//! - An instance's [`PackDurable`] guard lives until its rows are committed, so the pack log's
//!   checkpoint (which syncs the catalog) never passes a record whose rows a crash could lose.
//! - What the group recorder cannot record (a duplicate, an unknown project, any error) goes
//!   the careful way ([`Ingestor::commit`]'s rules). An instance already answered with success
//!   whose rows fail to commit (the database fails) is not given up: its guard is kept — no
//!   checkpoint passes it (checkpoints wait), so a restart records it again from its record —
//!   and recording it is retried every [`RETRY_EVERY`]. Only one the catalog refuses for
//!   good (its project deleted since its association began, an invalid record) is let go:
//!   its record is punched after the next checkpoint, as a failed commit's is.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use radport_catalog::{
    BehindRecording, CatalogError, Durability, GroupRecorder, InstanceRecord, Route,
};
use radport_journal::pack::PackDurable;
use radport_metrics::Channel;
use tokio::sync::oneshot;

use crate::{Disposition, IngestError, Ingestor};

/// How long the first instance of a batch waits for others (unless someone waits for it).
pub const LINGER: Duration = Duration::from_millis(5);

/// At most this many instances are recorded in one transaction.
pub const MAX_BATCH: usize = 256;

/// How often an answered instance whose rows could not be committed is tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// An instance durable in its pack, to be recorded.
pub(crate) struct Pending {
    pub(crate) record: InstanceRecord,
    pub(crate) route: Route,
    /// Held until its rows are committed.
    pub(crate) durable: PackDurable,
    /// Its sender waits for the answer (no lingering for others), and has not been answered
    /// yet: a failure is its answer, and its record is discarded as on the direct path.
    pub(crate) waited_for: bool,
    pub(crate) reply: oneshot::Sender<Result<Disposition, IngestError>>,
}

/// The sending half: cheap to clone; the thread ends once every clone is dropped and what
/// was sent is recorded.
#[derive(Clone, Debug)]
pub(crate) struct RecordBehind {
    to_record: mpsc::Sender<Pending>,
    /// Woken for an instance that is waited for (it does not linger).
    thread: std::thread::Thread,
}

impl RecordBehind {
    /// Starts the recording thread: rows the way the catalog gave (`Catalog::behind_recording`:
    /// a group recorder's transactions, or its group commit), the careful way through
    /// `careful` (an ingestor without packs' recording behind, so that the thread does not
    /// keep itself alive) on `runtime`.
    pub(crate) fn spawn(
        way: BehindRecording,
        careful: Ingestor,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let recorder = match way {
            BehindRecording::GroupRecorder(mut recorder) => {
                // Each checkpoint of the log syncs the catalog (`Ingestor::checkpoint`).
                recorder.leave_checkpoints_to_sync();
                Some(*recorder)
            }
            BehindRecording::GroupCommit => None,
        };
        let (to_record, pending) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("radport-record-behind".into())
            .spawn(move || {
                Recording {
                    recorder,
                    careful,
                    runtime,
                    stuck: Vec::new(),
                }
                .run(pending)
            })?
            .thread()
            .clone();
        Ok(Self { to_record, thread })
    }

    /// Hands `pending` to the thread; if it is gone, gives it back.
    pub(crate) fn send(&self, pending: Pending) -> Result<(), Box<Pending>> {
        let waited_for = pending.waited_for;
        self.to_record.send(pending).map_err(|e| Box::new(e.0))?;
        if waited_for {
            self.thread.unpark();
        }
        Ok(())
    }
}

/// An answered instance whose rows could not be committed: its guard is held, it is retried.
struct Stuck {
    record: InstanceRecord,
    route: Route,
    _durable: PackDurable,
}

struct Recording {
    /// SQLite on a file; `None`: every batch the careful way, its instances at once.
    recorder: Option<GroupRecorder>,
    careful: Ingestor,
    runtime: tokio::runtime::Handle,
    stuck: Vec<Stuck>,
}

impl Recording {
    fn run(mut self, pending: mpsc::Receiver<Pending>) {
        let mut last_retry = Instant::now();
        loop {
            let first = match self.stuck.is_empty() {
                true => pending.recv().map_err(|_| RecvTimeoutError::Disconnected),
                false => pending.recv_timeout(RETRY_EVERY),
            };
            let first = match first {
                Ok(first) => Some(first),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(first) = first {
                let batch = gather(first, &pending);
                self.record(batch);
            }
            if !self.stuck.is_empty() && last_retry.elapsed() >= RETRY_EVERY {
                last_retry = Instant::now();
                self.retry_stuck();
            }
        }
        // Every sender is gone: what is still stuck is recorded again after a restart.
        if !self.stuck.is_empty() {
            tracing::error!(
                instances = self.stuck.len(),
                "acknowledged instances are not recorded in the catalog; \
                 they are recorded from their pack records at the next start"
            );
        }
    }

    /// Records a batch: with a group recorder together if every instance is new, else each
    /// the careful way; without one, the careful way all at once. A panic of either is taken
    /// as a failure: no answered instance is let go by one.
    fn record(&mut self, batch: Vec<Pending>) {
        let Some(recorder) = &mut self.recorder else {
            return self.record_at_once(batch);
        };
        let rows = batch
            .iter()
            .map(|p| (&p.record, &p.route, Durability::Deferred));
        let together =
            catch_unwind(AssertUnwindSafe(|| recorder.record_new(rows))).unwrap_or_else(|_| {
                tracing::error!("the group recorder panicked; each instance goes the careful way");
                false
            });
        if together {
            for p in batch {
                drop(p.durable);
                let _ = p.reply.send(Ok(Disposition::Stored));
            }
            return;
        }
        for p in batch {
            self.record_carefully(p);
        }
    }

    /// Every instance of `batch` the careful way at the same time: the catalog's group commit
    /// takes what is handed to it together. If that panics, each again on its own.
    fn record_at_once(&mut self, batch: Vec<Pending>) {
        let commits = batch.iter().map(|p| self.commit(&p.record, &p.route));
        let results = catch_unwind(AssertUnwindSafe(|| {
            self.runtime.block_on(futures::future::join_all(commits))
        }));
        match results {
            Ok(results) => {
                for (p, result) in batch.into_iter().zip(results) {
                    self.settle(p, Attempt::of(result));
                }
            }
            Err(_) => {
                tracing::error!("recording a batch panicked; each instance is recorded alone");
                for p in batch {
                    self.record_carefully(p);
                }
            }
        }
    }

    /// Commits one instance the careful way ([`Ingestor::commit`]'s rules, its object kept).
    async fn commit(
        &self,
        record: &InstanceRecord,
        route: &Route,
    ) -> Result<Disposition, CatalogError> {
        let policy = self.careful.policy;
        self.careful
            .commit_keeping(record, route, policy, Durability::Deferred)
            .await
    }

    /// One instance the careful way, a panic taken as a failure.
    fn attempt(&self, record: &InstanceRecord, route: &Route) -> Attempt {
        let commit = AssertUnwindSafe(|| self.runtime.block_on(self.commit(record, route)));
        match catch_unwind(commit) {
            Ok(result) => Attempt::of(result),
            Err(_) => Attempt::Failed(IngestError::Storage("recording it panicked".into())),
        }
    }

    fn record_carefully(&mut self, p: Pending) {
        let attempt = self.attempt(&p.record, &p.route);
        self.settle(p, attempt);
    }

    /// Answers what recording `p` came to: its guard dropped once recorded, or let go if
    /// refused for good, or kept and retried.
    fn settle(&mut self, p: Pending, attempt: Attempt) {
        match attempt {
            Attempt::Recorded(disposition) => {
                drop(p.durable);
                let _ = p.reply.send(Ok(disposition));
            }
            Attempt::Refused(e) | Attempt::Failed(e) if p.waited_for => {
                // Not answered yet: the failure is its answer, as on the direct path.
                self.let_go(&p.record);
                drop(p.durable);
                let _ = p.reply.send(Err(e));
            }
            Attempt::Refused(e) => {
                tracing::warn!(error = %e, series = %p.record.series_instance_uid,
                    "the catalog refuses an acknowledged instance; it is not kept");
                self.let_go(&p.record);
                drop(p.durable);
                let _ = p.reply.send(Err(e));
            }
            Attempt::Failed(e) => {
                tracing::error!(error = %e, series = %p.record.series_instance_uid,
                    "an acknowledged instance could not be recorded; retried every second \
                     (and from its pack record at the next start)");
                let _ = p.reply.send(Err(e));
                self.stuck.push(Stuck {
                    record: p.record,
                    route: p.route,
                    _durable: p.durable,
                });
            }
        }
    }

    fn retry_stuck(&mut self) {
        for s in std::mem::take(&mut self.stuck) {
            match self.attempt(&s.record, &s.route) {
                Attempt::Recorded(_) => tracing::info!(
                    series = %s.record.series_instance_uid,
                    "an acknowledged instance was recorded at a retry"
                ),
                Attempt::Refused(e) => {
                    tracing::warn!(error = %e, series = %s.record.series_instance_uid,
                        "the catalog refuses an acknowledged instance; it is not kept");
                    self.let_go(&s.record);
                }
                Attempt::Failed(_) => self.stuck.push(s),
            }
        }
    }

    /// An instance that will not be recorded: its record is punched after the checkpoint.
    fn let_go(&self, record: &InstanceRecord) {
        self.runtime
            .block_on(self.careful.discard(&record.object_key));
    }
}

/// What recording one instance the careful way came to.
enum Attempt {
    Recorded(Disposition),
    /// For good (see [`refused_for_good`]).
    Refused(IngestError),
    /// Perhaps not next time.
    Failed(IngestError),
}

impl Attempt {
    fn of(result: Result<Disposition, CatalogError>) -> Self {
        match result {
            Ok(disposition) => Attempt::Recorded(disposition),
            Err(e) if refused_for_good(&e) => Attempt::Refused(e.into()),
            Err(e) => Attempt::Failed(e.into()),
        }
    }
}

/// Whether the catalog refuses a record whatever the retries (as opposed to failing).
fn refused_for_good(e: &CatalogError) -> bool {
    matches!(e, CatalogError::NotFound(_) | CatalogError::Invalid(_))
}

/// `first` and whatever arrives within [`LINGER`] of it (up to [`MAX_BATCH`]); without
/// lingering once an instance in it is waited for. The thread sleeps through the linger
/// rather than being woken by each arrival (a switch each); an instance that is waited for
/// wakes it ([`RecordBehind::send`]).
fn gather(first: Pending, pending: &mpsc::Receiver<Pending>) -> Vec<Pending> {
    let deadline = Instant::now() + LINGER;
    let mut waited_for = first.waited_for;
    let mut batch = vec![first];
    loop {
        while batch.len() < MAX_BATCH {
            let Ok(next) = pending.try_recv() else {
                break;
            };
            waited_for |= next.waited_for;
            batch.push(next);
        }
        if waited_for || batch.len() >= MAX_BATCH {
            break;
        }
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => std::thread::park_timeout(left),
            _ => break,
        }
    }
    batch
}

/// The rows of an instance answered once durable, on their way into the catalog: wait for
/// them with [`PendingRecord::recorded`] (dropping it changes nothing: the instance is
/// recorded all the same).
#[derive(Debug)]
pub struct PendingRecord {
    pub(crate) reply: oneshot::Receiver<Result<Disposition, IngestError>>,
    pub(crate) channel: Channel,
    pub(crate) size: u64,
}

impl PendingRecord {
    /// Waits until the instance is recorded: what the catalog did with it. A failure means it
    /// is not recorded yet (it is retried, and recorded again at the next start); it is still
    /// durable in its pack.
    pub async fn recorded(mut self) -> Result<Disposition, IngestError> {
        let result = self.wait().await;
        self.count(&result);
        result
    }

    /// What [`PendingRecord::recorded`] gives, if it is there already.
    pub fn try_recorded(&mut self) -> Option<Result<Disposition, IngestError>> {
        let result = match self.reply.try_recv() {
            Ok(result) => result,
            Err(oneshot::error::TryRecvError::Empty) => return None,
            Err(oneshot::error::TryRecvError::Closed) => Err(gone()),
        };
        self.count(&result);
        Some(result)
    }

    /// Counts an instance recorded (`radport_instances_received_total`).
    fn count(&self, result: &Result<Disposition, IngestError>) {
        if let Ok(disposition) = result {
            radport_metrics::global().instance_received(
                self.channel,
                disposition.as_str(),
                self.size,
            );
        }
    }

    pub(crate) async fn wait(&mut self) -> Result<Disposition, IngestError> {
        match (&mut self.reply).await {
            Ok(result) => result,
            Err(_) => Err(gone()),
        }
    }
}

fn gone() -> IngestError {
    IngestError::Storage("the catalog's recording thread is gone".into())
}
