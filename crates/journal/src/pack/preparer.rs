//! The stage's first half ([`Stage::prepare`]: a group's catalog rows, written but not
//! committed) on a thread of its own while the writer writes and syncs the group, so that
//! the statements go beside the disk's work instead of after it; the writer applies the
//! group ([`Stage::durable`]: the commit) on its own thread once the group is durable.
//!
//! The writer's calls stay plain `pwritev` and `fdatasync` on its own thread — what the
//! durability proof (`radport_testkit::strace`) reads. The preparer is woken once per group
//! as the writer starts it; its wake and the statements take less than the write and sync of
//! a 0.5 MB instance, so the writer seldom waits for it. Tried first: the write started
//! through `io_uring` and the statements on the writer's thread, no thread woken (paired
//! rounds: one sender 1.08–1.11× at 0.80–0.98× the CPU) — but the bytes of a write through
//! the ring are invisible to strace, and so to the durability proof.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Stage;
use crate::Position;

/// A group's records and inputs, as the stage prepares them.
pub(super) type Records<S> = Vec<(Position, <S as Stage>::Input)>;

/// What the preparer hands back: the records, and the panic if `prepare` panicked.
struct Prepared<S: Stage> {
    records: Records<S>,
    panic: Option<Box<dyn Any + Send>>,
}

/// The stage, shared by the writer and its preparer (one of them uses it at a time).
pub(super) fn lock<S: Stage>(stage: &Mutex<S>) -> MutexGuard<'_, S> {
    // A panic inside the stage is answered by `abandon` before the stage is used again.
    stage.lock().unwrap_or_else(|e| e.into_inner())
}

/// The preparer thread of a pack log's writer; it ends (and the stage is dropped) when this
/// is dropped.
pub(super) struct Preparer<S: Stage> {
    /// `None` only while dropped.
    jobs: Option<mpsc::Sender<Records<S>>>,
    done: mpsc::Receiver<Prepared<S>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<S: Stage> Drop for Preparer<S> {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // It ends once it sees no more jobs can come; a panic there was reported.
            let _ = thread.join();
        }
    }
}

impl<S: Stage> Preparer<S> {
    /// The thread, or `None` if it cannot be started (then the writer prepares after the
    /// sync, as without one).
    pub(super) fn spawn(stage: Arc<Mutex<S>>) -> Option<Self> {
        let (jobs, job_queue) = mpsc::channel::<Records<S>>();
        let (answers, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("radport-pack-stage".into())
            .spawn(move || {
                while let Ok(mut records) = job_queue.recv() {
                    let panic = catch_unwind(AssertUnwindSafe(|| {
                        lock(&stage).prepare(&mut records);
                    }))
                    .err();
                    if answers.send(Prepared { records, panic }).is_err() {
                        break;
                    }
                }
            });
        match spawned {
            Ok(thread) => Some(Self {
                jobs: Some(jobs),
                done,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no pack stage thread: a group's rows are written after its sync");
                None
            }
        }
    }

    /// Hands `records` to the preparer; they come back from [`Started::finish`]. `Err`
    /// gives them back if the thread is gone. `stage` is the one the thread was spawned
    /// with: a group dropped unfinished is abandoned there.
    pub(super) fn start<'p>(
        &'p self,
        records: Records<S>,
        stage: &'p Mutex<S>,
    ) -> Result<Started<'p, S>, Records<S>> {
        let Some(jobs) = &self.jobs else {
            return Err(records);
        };
        match jobs.send(records) {
            Ok(()) => Ok(Started {
                preparer: Some(self),
                stage,
            }),
            Err(mpsc::SendError(records)) => Err(records),
        }
    }
}

/// A group being prepared; waited for at the latest when dropped, so that the next group's
/// answer is its own — and then abandoned: dropped without [`finish`](Self::finish), the
/// writer never applies it (it panicked), and what `prepare` did must not stay (a
/// transaction left open would keep the catalog's write lock).
pub(super) struct Started<'p, S: Stage> {
    /// `None` once finished.
    preparer: Option<&'p Preparer<S>>,
    stage: &'p Mutex<S>,
}

impl<S: Stage> Started<'_, S> {
    /// Waits until the group is prepared: its records back, or the panic of `prepare` —
    /// or, if the thread died, a panic saying so (nothing of the group is known to be
    /// prepared; the writer abandons it as after a panic).
    pub(super) fn finish(mut self) -> Result<Records<S>, Box<dyn Any + Send>> {
        let answer = self.preparer.take().map(|p| wait_for(&p.done));
        match answer {
            Some(Ok(Prepared {
                records,
                panic: None,
            })) => Ok(records),
            Some(Ok(Prepared {
                panic: Some(panic), ..
            })) => Err(panic),
            None | Some(Err(_)) => Err(Box::new("the pack stage's thread is gone")),
        }
    }
}

impl<S: Stage> Drop for Started<'_, S> {
    fn drop(&mut self) {
        if let Some(preparer) = self.preparer.take() {
            let _ = wait_for(&preparer.done);
            lock(self.stage).abandon();
        }
    }
}

/// The preparer's answer, waited for. The stage may itself wait for a task of the runtime —
/// the catalog's write lock is held by tasks across their awaits — so a leader on a worker of
/// a multi-threaded runtime waits through `block_in_place`, which hands the worker's other
/// tasks to another thread meanwhile: a worker blocked here would never run the task the
/// preparer waits for. On a runtime with one worker (tokio's default on a one-processor
/// machine) the receiver stopped for good at the first group whose rows waited for the lock
/// (`a_leader_on_the_only_worker_lets_the_stage_wait_for_a_task`). Not needed when the answer
/// is already there, which is usual: the rows take less than the write and sync.
fn wait_for<T>(done: &mpsc::Receiver<T>) -> Result<T, mpsc::RecvError> {
    match done.try_recv() {
        Ok(answer) => return Ok(answer),
        Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
        Err(mpsc::TryRecvError::Empty) => {}
    }
    let runtime = tokio::runtime::Handle::try_current().ok();
    if super::writer::is_multi_thread(runtime.as_ref()) {
        tokio::task::block_in_place(|| done.recv())
    } else {
        done.recv()
    }
}
