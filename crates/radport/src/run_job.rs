//! `radport run-job JOB WORKER` (hidden): the child process of an isolated job.
//!
//! `radport serve` starts it (its own executable) for each job of a risky kind, under a memory
//! limit, with the server's settings in `RADPORT_JOB_SETTINGS`. It opens the catalog
//! and the archive, checks that the job is still held by `WORKER`, runs the job's handler on a
//! current-thread runtime — no listeners, no scheduler, no lease renewal (the server does that)
//! — and reports by its exit status (see `radport_pipeline::isolate`): 0 done, 3 failed with
//! the message on stdout, 4 no longer this worker's. Its last stderr line gives the server
//! what it counted (`radport_metrics::CHILD_REPORT_PREFIX`). Anything else (an abort on a failed
//! allocation, a signal) the server records as a crash of the attempt.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use radport_archive::Archive;
use radport_catalog::{Catalog, CatalogOptions, JobState};
use radport_ingest::Ingestor;
use radport_pipeline::isolate::{EXIT_JOB_FAILED, EXIT_NOT_OURS, EXIT_SUCCEEDED, PARENT_PID_ENV};
use tracing_subscriber::EnvFilter;

use crate::config::Settings;

/// The environment variable that carries the server's resolved settings to the child, in the
/// configuration file's form ([`Settings::to_toml`]). The child reads nothing else: no flags,
/// no other `RADPORT_*` variable, no configuration file.
pub const SETTINGS_ENV: &str = "RADPORT_JOB_SETTINGS";

/// Arguments of `radport run-job`.
#[derive(clap::Args, Debug)]
pub struct RunJobArgs {
    /// Id of the claimed job.
    pub job: String,
    /// Worker that claimed it (the job must still be held by it).
    pub worker: String,
}

enum Outcome {
    Succeeded,
    Failed(String),
    NotOurs,
}

/// Exits this process once its parent is no longer the server that started it (the server
/// died: its job will be reaped and run again, and must not go on here meanwhile).
fn exit_with_the_server() {
    #[cfg(unix)]
    {
        let Some(server) = std::env::var(PARENT_PID_ENV)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            return;
        };
        let watch = move || loop {
            if std::os::unix::process::parent_id() != server {
                std::process::exit(EXIT_NOT_OURS);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("parent-watch".into())
            .stack_size(64 * 1024)
            .spawn(watch)
        {
            tracing::warn!(error = %e, "cannot watch the server process");
        }
    }
}

/// Runs the job and exits with the status the server reads.
pub fn main(args: RunJobArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_env("RADPORT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    exit_with_the_server();
    radport_metrics::global().tally_for_parent();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    let (code, message) = match outcome {
        Ok(Outcome::Succeeded) => (EXIT_SUCCEEDED, None),
        Ok(Outcome::NotOurs) => (EXIT_NOT_OURS, None),
        Ok(Outcome::Failed(message)) => (EXIT_JOB_FAILED, Some(message)),
        Err(e) => (EXIT_JOB_FAILED, Some(format!("{e:#}"))),
    };
    if let Some(message) = message {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(message.as_bytes());
        let _ = out.flush();
    }
    // What this process counted (instances imported, errors) goes into the server's figures.
    if let Some(report) = radport_metrics::global().child_report() {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{report}");
        let _ = err.flush();
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn run(args: RunJobArgs) -> Result<Outcome> {
    let text = std::env::var(SETTINGS_ENV).with_context(|| {
        format!("{SETTINGS_ENV} is not set: run-job is started by radport serve")
    })?;
    let settings = Settings::from_toml(&text)?;
    // Two connections: the job's reads and its writes (SQLite: the writer's own one besides).
    let catalog = Catalog::connect_with(
        &settings.catalog_url,
        &CatalogOptions {
            max_connections: Some(2),
            // The server that started this child set the schema up.
            schema_already_set_up: true,
        },
    )
    .await
    .context("cannot open the catalog")?;
    let Some(job) = catalog.get_job(&args.job).await? else {
        return Ok(Outcome::NotOurs);
    };
    if job.state != JobState::Running || job.worker.as_deref() != Some(args.worker.as_str()) {
        return Ok(Outcome::NotOurs);
    }
    let archive = match &settings.archive_url {
        None => Archive::local(&settings.data_dir.join("archive"))
            .context("cannot open the archive directory")?,
        // The server checked the bucket at its start; a probe per job would be wasted.
        Some(url) => Archive::from_url_unchecked(url)
            .await
            .context("cannot open the archive")?,
    };
    let ingestor = Ingestor::new(archive.clone(), catalog.clone(), settings.duplicate_policy);
    let workflows = radport_workflows::Workflows::new(ingestor, settings.data_dir.join("scratch"))
        .with_limits(settings.import_limits);
    let pipeline = radport_pipeline::worker::Pipeline::new(
        catalog,
        archive,
        crate::serve::pipeline_config(&settings, None),
    )
    .with_handler(std::sync::Arc::new(crate::serve::WorkflowJobs(workflows)));
    tracing::debug!(job = %job.id, kind = %job.kind, "running the job in its own process");
    Ok(match pipeline.execute(&job).await {
        Ok(()) => Outcome::Succeeded,
        Err(e) => Outcome::Failed(e.to_string()),
    })
}
