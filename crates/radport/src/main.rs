//! `radport`: the binary. `radport serve` runs the whole intake (DICOM receiver, HTTP API) in
//! one process with embedded defaults; `radport user` and `radport collect` work on the
//! catalog and archive directly; every other subcommand is a client of the HTTP API.

mod accounts;
mod client;
mod collect;
mod config;
mod destinations;
mod logging;
mod login;
mod run_job;
mod serve;
mod transfer;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Medical imaging intake: receive DICOM, archive it, catalog it per project and dataset.
#[derive(Parser, Debug)]
#[command(name = "radport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once at start: the size of `serve`'s settings does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server: DICOM receiver and HTTP API.
    Serve(config::ServeArgs),
    /// Remove unreferenced archive objects now (the collection `serve` runs every
    /// --collect-interval), with the settings of `serve`.
    Collect(config::ServeArgs),
    /// Manage projects.
    Project {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: client::ProjectAction,
    },
    /// List the datasets of a project.
    Dataset {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: client::DatasetAction,
    },
    /// Find series and their instances.
    Series {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: client::SeriesAction,
    },
    /// Manage a project's C-MOVE destinations (DICOM query/retrieve).
    Destination {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: destinations::DestinationAction,
    },
    /// Watch the pipeline's job queue.
    Jobs {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: client::JobsAction,
    },
    /// Run workflows that import uploaded files.
    Workflow {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: transfer::WorkflowAction,
    },
    /// Upload files (resumable, with a progress bar) into the uploads area.
    Upload {
        #[command(flatten)]
        client: client::ClientArgs,
        /// Files to upload.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Name (path) to store a single file under [default: its file name].
        #[arg(long = "as")]
        name: Option<String>,
    },
    /// List, download or delete uploaded files.
    Files {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        action: transfer::FilesAction,
    },
    /// Manage accounts (on the catalog directly, with the settings of `serve`).
    User {
        #[command(subcommand)]
        action: accounts::UserAction,
    },
    /// Sign in to a server (password on standard input) and keep a token for the other commands.
    Login {
        #[command(flatten)]
        client: client::ClientArgs,
        /// User name.
        #[arg(long)]
        user: String,
    },
    /// Revoke and forget the token `radport login` kept for a server.
    Logout {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Check that a server answers.
    Health {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Run one claimed job in this process and exit (started by `serve` for risky jobs).
    #[command(hide = true)]
    RunJob(run_job::RunJobArgs),
}

fn main() -> Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let command = match cli.command {
        // A job's child process: its own small runtime, its own exit statuses.
        Command::RunJob(args) => return Ok(run_job::main(args)),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve(args) => serve::run(args).await,
            Command::Collect(args) => collect::run(args).await,
            Command::Project { client, action } => client::project(&client, action).await,
            Command::Dataset { client, action } => client::dataset(&client, action).await,
            Command::Series { client, action } => client::series(&client, action).await,
            Command::Jobs { client, action } => client::jobs(&client, action).await,
            Command::Destination { client, action } => {
                destinations::destination(&client, action).await
            }
            Command::Upload {
                client,
                files,
                name,
            } => transfer::upload(&client, &files, name.as_deref()).await,
            Command::Files { client, action } => transfer::files(&client, action).await,
            Command::Workflow { client, action } => transfer::workflow(&client, action).await,
            Command::Health { client } => client::health(&client).await,
            Command::User { action } => accounts::user(action).await,
            Command::Login { client, user } => login::login(&client, &user).await,
            Command::Logout { client } => login::logout(&client).await,
            Command::RunJob(_) => anyhow::bail!("run-job is handled before the runtime starts"),
        }
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
