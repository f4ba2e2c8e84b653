//! The catalog's committer thread: records new instances for callers on the runtime through
//! a [`GroupRecorder`] (`recorder.rs`), a group at a time — every record waiting when it
//! wakes. Each caller waits for its answer; what was not recorded goes the careful way.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::recorder::{GroupRecorder, NewInstance, RecorderSource};
use super::MAX_GROUP_COMMIT;
use crate::{CatalogError, Durability, InstanceRecord, Route};

/// One record handed to the committer thread, and where its answer goes.
struct Job {
    instance: NewInstance,
    reply: oneshot::Sender<bool>,
}

enum Message {
    Record(Box<Job>),
    Stop,
}

/// The catalog's committer thread: records new instances for callers on a runtime (each
/// waits for its answer; the thread takes every record waiting as one group). Dropping every
/// handle (or [`Committer::stop`]) ends it.
pub(crate) struct Committer {
    sender: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Opens the thread's recorder and starts it.
    pub(crate) fn start(source: RecorderSource) -> Result<Committer, CatalogError> {
        let recorder = GroupRecorder::open(source).map_err(|e| {
            CatalogError::Invalid(format!("cannot open the catalog's committer: {e}"))
        })?;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("catalog-committer".into())
            .spawn(move || run(recorder, receiver))
            .map_err(|e| {
                CatalogError::Invalid(format!("cannot start the catalog's committer: {e}"))
            })?;
        Ok(Committer {
            sender,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Records `rec` as a new instance, with the records of everyone else waiting. Whether it
    /// was; if not, nothing of it was and the caller takes the careful way.
    pub(super) async fn record_new(
        &self,
        rec: &InstanceRecord,
        route: &Route,
        durability: Durability,
    ) -> bool {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            instance: NewInstance {
                record: rec.clone(),
                route: route.clone(),
                durability,
            },
            reply,
        };
        if self.sender.send(Message::Record(Box::new(job))).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
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

/// The thread: a group at a time, until stopped or every handle is gone.
fn run(mut recorder: GroupRecorder, receiver: mpsc::Receiver<Message>) {
    loop {
        let Ok(Message::Record(first)) = receiver.recv() else {
            return;
        };
        let mut jobs = vec![*first];
        let mut stop = false;
        while jobs.len() < MAX_GROUP_COMMIT {
            match receiver.try_recv() {
                Ok(Message::Record(job)) => jobs.push(*job),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let (group, replies): (Vec<NewInstance>, Vec<_>) =
            jobs.into_iter().map(|j| (j.instance, j.reply)).unzip();
        let recorded = recorder.record_new(group.iter().map(NewInstance::row));
        for reply in replies {
            let _ = reply.send(recorded);
        }
        if stop {
            return;
        }
    }
}
