//! The run of an import, the same for every import workflow: the upload is checked and copied
//! into the scratch area, a blocking thread reads the copy and sends what it finds over a
//! bounded channel, the import handles each message on the async side (ingest, progress, item
//! errors), and at the end the upload is deleted when asked and every item was imported.
//!
//! What differs between imports is only what the reading thread sends and what a message
//! means: an [`Import`] says that, [`run`] does the rest.

use std::future::Future;
use std::path::Path;

use radport_catalog::Route;
use tokio::sync::mpsc::Sender;

use crate::{upload, Recorder, WorkflowError, Workflows};

/// Where an import's instances go.
pub(crate) struct Destination {
    /// Project (canonical name) and dataset.
    pub(crate) route: Route,
    /// The instances' source as the catalog records it: `upload:<file>`.
    pub(crate) source: String,
}

/// The upload an import reads, where it goes, and whether to delete it at the end.
pub(crate) struct Upload<'a> {
    /// Path of the upload inside the uploads area.
    pub(crate) file: &'a str,
    /// Project to import into, as given.
    pub(crate) project: &'a str,
    /// Dataset to import into.
    pub(crate) dataset: &'a str,
    /// Delete the upload once every item was imported.
    pub(crate) delete_original: bool,
}

/// One kind of import: what its reading thread sends, and what the run does with it.
pub(crate) trait Import: Send {
    /// What the reading thread sends.
    type Msg: Send + 'static;

    /// The reading thread, as named when it stops abnormally ("the zip reader").
    const READER: &'static str;

    /// Messages the reading thread may be ahead of the async side.
    const QUEUE: usize;

    /// Handles one message; `Err` ends the run as failed (after [`Import::end`]).
    fn handle(
        &mut self,
        w: &Workflows,
        to: &Destination,
        rec: &mut Recorder,
        msg: Self::Msg,
    ) -> impl Future<Output = Result<(), WorkflowError>> + Send;

    /// After the last message, or after an error: releases what is still open and logs what
    /// the run should say once.
    fn end(&mut self, rec: &mut Recorder) -> impl Future<Output = ()> + Send;
}

/// Runs `import` over `upload`: `read` reads the scratch copy in a blocking thread and sends
/// its messages.
pub(crate) async fn run<I: Import>(
    w: &Workflows,
    rec: &mut Recorder,
    upload: Upload<'_>,
    read: impl FnOnce(&Path, &Sender<I::Msg>) + Send + 'static,
    mut import: I,
) -> Result<(), WorkflowError> {
    let upload::Prepared {
        project,
        key,
        scratch,
    } = upload::prepare(w, rec, upload.file, upload.project, upload.dataset).await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<I::Msg>(I::QUEUE);
    let path = scratch.path().to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read(&path, &tx));

    let to = Destination {
        route: Route {
            project,
            dataset: upload.dataset.to_string(),
        },
        source: format!("upload:{}", upload.file),
    };
    let mut failed = None;
    while let Some(msg) = rx.recv().await {
        if let Err(e) = import.handle(w, &to, rec, msg).await {
            failed = Some(e);
            break;
        }
    }
    import.end(rec).await;
    if let Some(e) = failed {
        // The reader stops at its next send, which fails once the channel is gone.
        drop(rx);
        return Err(e);
    }
    reader
        .await
        .map_err(|e| WorkflowError::Fatal(format!("{} stopped: {e}", I::READER)))?;
    drop(scratch);
    upload::finish(w, rec, &key, upload.file, upload.delete_original).await
}
