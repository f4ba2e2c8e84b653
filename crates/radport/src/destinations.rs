//! `radport destination list|add|remove --project P`: a project's C-MOVE destinations, over
//! the HTTP API (`/api/projects/{project}/dicom-destinations…`).

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{cell, print_json, print_table, Api, ClientArgs};

#[derive(Subcommand, Debug)]
pub enum DestinationAction {
    /// List a project's C-MOVE destinations.
    List {
        /// The project.
        #[arg(long)]
        project: String,
    },
    /// Add (or replace) a C-MOVE destination: the AE title C-MOVE requests name, and where it
    /// listens.
    Add {
        /// The project.
        #[arg(long)]
        project: String,
        /// AE title (1 to 16 characters).
        ae_title: String,
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove a C-MOVE destination.
    Remove {
        /// The project.
        #[arg(long)]
        project: String,
        /// Its AE title.
        ae_title: String,
    },
}

/// An AE title as one path segment (AE titles may hold `/`, `?`, `#`, `%` and spaces).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn destination(args: &ClientArgs, action: DestinationAction) -> Result<()> {
    let api = Api::new(args);
    match action {
        DestinationAction::List { project } => {
            let v = api
                .get(
                    &format!("/api/projects/{}/dicom-destinations", segment(&project)),
                    &[],
                )
                .await?;
            if args.json {
                return print_json(&v);
            }
            print_table(
                v["destinations"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &["ae_title", "host", "port", "description"],
            );
        }
        DestinationAction::Add {
            project,
            ae_title,
            host,
            port,
            description,
        } => {
            let response = api
                .http
                .put(format!(
                    "{}/api/projects/{}/dicom-destinations/{}",
                    api.base,
                    segment(&project),
                    segment(&ae_title)
                ))
                .json(&serde_json::json!({
                    "host": host,
                    "port": port,
                    "description": description,
                }))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            let v: Value = api.check(response).await?.json().await?;
            if args.json {
                return print_json(&v);
            }
            println!(
                "destination {} of project {project}: {}:{}",
                cell(&v["ae_title"]),
                cell(&v["host"]),
                cell(&v["port"])
            );
        }
        DestinationAction::Remove { project, ae_title } => {
            let response = api
                .http
                .delete(format!(
                    "{}/api/projects/{}/dicom-destinations/{}",
                    api.base,
                    segment(&project),
                    segment(&ae_title)
                ))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            api.check(response).await?;
            if !args.json {
                println!("removed destination {ae_title} of project {project}");
            }
        }
    }
    Ok(())
}
