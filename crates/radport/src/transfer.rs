//! `radport upload` (a tus 1.0 client with resume and a progress bar) and `radport files`.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{print_json, print_table, Api, ClientArgs};

/// Bytes sent per PATCH request: a dropped connection costs at most this much again.
const CHUNK: usize = 8 * 1024 * 1024;
/// Attempts per chunk before the upload gives up (the server keeps what arrived).
const ATTEMPTS: u32 = 5;

#[derive(Subcommand, Debug)]
pub enum FilesAction {
    /// List uploaded files.
    List,
    /// Download an uploaded file.
    Get {
        path: String,
        /// Output file [default: the file's name].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete an uploaded file.
    Rm { path: String },
}

#[derive(Subcommand, Debug)]
pub enum WorkflowAction {
    /// List workflows and their parameters.
    List,
    /// Start a run and follow it to the end with a progress bar.
    Run {
        /// Workflow name, e.g. import-dicoms-from-data-upload.
        name: String,
        /// Parameters as key=value (repeatable).
        #[arg(long = "param", short = 'p', value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Return at once with the run's id instead of following it.
        #[arg(long)]
        detach: bool,
    },
    /// Show runs, or one run.
    Runs { id: Option<String> },
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: write parameters as key=value"))
}

pub async fn workflow(args: &ClientArgs, action: WorkflowAction) -> Result<()> {
    let api = Api::new(args);
    match action {
        WorkflowAction::List => {
            let v = api.get("/api/workflows", &[]).await?;
            if args.json {
                return print_json(&v);
            }
            for w in v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                println!(
                    "{}\n  {}",
                    crate::client::cell(&w["name"]),
                    crate::client::cell(&w["description"])
                );
                for p in w["parameters"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    println!(
                        "    {:<22} {:<8} default {:<14} {}",
                        crate::client::cell(&p["name"]),
                        crate::client::cell(&p["type"]),
                        p["default"].to_string(),
                        crate::client::cell(&p["description"])
                    );
                }
            }
        }
        WorkflowAction::Runs { id } => {
            let v = match id {
                Some(id) => api.get(&format!("/api/workflow-runs/{id}"), &[]).await?,
                None => api.get("/api/workflow-runs", &[]).await?,
            };
            if args.json || v.get("items").is_none() {
                return print_json(&v);
            }
            let rows: Vec<serde_json::Value> = v["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r["id"], "workflow": r["workflow"], "state": r["state"],
                        "progress": format!("{}/{}", r["progress"]["done"], r["progress"]["total"]),
                        "errors": r["errors"].as_array().map(Vec::len).unwrap_or(0),
                        "created_at": r["created_at"],
                    })
                })
                .collect();
            print_table(
                &rows,
                &[
                    "id",
                    "workflow",
                    "state",
                    "progress",
                    "errors",
                    "created_at",
                ],
            );
        }
        WorkflowAction::Run {
            name,
            params,
            detach,
        } => {
            let body: serde_json::Map<String, serde_json::Value> = params
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let response = api
                .http
                .post(format!("{}/api/workflows/{name}/runs", api.base))
                .json(&body)
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            let run: serde_json::Value = api.check(response).await?.json().await?;
            let id = run["id"]
                .as_str()
                .context("the server gave no run id")?
                .to_string();
            if detach {
                if args.json {
                    return print_json(&run);
                }
                println!("started run {id}");
                return Ok(());
            }
            let bar = if args.json {
                ProgressBar::hidden()
            } else {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} items")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_message(name.clone());
                bar
            };
            let last = loop {
                let v = api.get(&format!("/api/workflow-runs/{id}"), &[]).await?;
                bar.set_length(v["progress"]["total"].as_u64().unwrap_or(0));
                bar.set_position(v["progress"]["done"].as_u64().unwrap_or(0));
                if matches!(v["state"].as_str(), Some("succeeded") | Some("failed")) {
                    break v;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            };
            bar.finish();
            if args.json {
                print_json(&last)?;
            } else {
                for line in last["log"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    println!("  {}", line.as_str().unwrap_or_default());
                }
                for e in last["errors"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    println!(
                        "  error: {}: {}",
                        crate::client::cell(&e["item"]),
                        crate::client::cell(&e["error"])
                    );
                }
            }
            if last["state"] == "failed" {
                bail!("run {id} failed");
            }
        }
    }
    Ok(())
}

/// Uploads each file (resumably) into the uploads area, named by `name` or its file name.
pub async fn upload(args: &ClientArgs, files: &[PathBuf], name: Option<&str>) -> Result<()> {
    let api = Api::new(args);
    if name.is_some() && files.len() != 1 {
        bail!("--as names one file; give one file");
    }
    for file in files {
        let target = match name {
            Some(n) => n.to_string(),
            None => file
                .file_name()
                .and_then(|n| n.to_str())
                .context("the file has no usable name; give one with --as")?
                .to_string(),
        };
        let (location, stored) = upload_one(&api, file, &target, !args.json).await?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "path": stored, "upload": location })
            );
        } else if stored != target {
            println!(
                "uploaded {} as {stored} ({target} was taken)",
                file.display()
            );
        } else {
            println!("uploaded {} as {stored}", file.display());
        }
    }
    Ok(())
}

/// `%XX` sequences decoded (the server's `Radport-File-Path` header).
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Uploads one file; returns its upload's location and the path the server stored it at
/// (numbered if `target` was taken).
async fn upload_one(
    api: &Api,
    file: &PathBuf,
    target: &str,
    show: bool,
) -> Result<(String, String)> {
    let mut reader =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let length = reader.metadata()?.len();
    let metadata = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(target)
    );
    let response = api
        .http
        .post(format!("{}/api/uploads", api.base))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata)
        .send()
        .await
        .with_context(|| format!("cannot reach radport at {}", api.base))?;
    let response = api.check(response).await?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("the server gave no upload location")?
        .to_string();
    let stored = response
        .headers()
        .get("radport-file-path")
        .and_then(|v| v.to_str().ok())
        .and_then(percent_decoded)
        .unwrap_or_else(|| target.to_string());
    let url = format!("{}{location}", api.base);
    let bar = if show {
        let bar = ProgressBar::new(length);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(target.to_string());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut offset: u64 = 0;
    let mut buffer = vec![0u8; CHUNK];
    while offset < length {
        let mut attempt = 0;
        loop {
            attempt += 1;
            reader.seek(SeekFrom::Start(offset))?;
            let n = read_up_to(&mut reader, &mut buffer)?;
            let sent = api
                .http
                .patch(&url)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", offset.to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(buffer[..n].to_vec())
                .send()
                .await;
            let ok = match sent {
                Ok(r) if r.status().is_success() => true,
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 409 => {
                    api.check(r).await?;
                    false
                }
                _ => false,
            };
            // Whatever happened, the server says where to go on.
            match server_offset(api, &url).await {
                Ok(o) => offset = o,
                Err(e) if attempt >= ATTEMPTS => return Err(e),
                Err(_) => {}
            }
            bar.set_position(offset);
            if ok || attempt >= ATTEMPTS {
                if !ok && offset < length {
                    bail!("upload of {} stopped at byte {offset} of {length}; run the command again to start over", file.display());
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    bar.finish();
    Ok((location, stored))
}

fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buffer.len() {
        let got = reader.read(&mut buffer[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

async fn server_offset(api: &Api, url: &str) -> Result<u64> {
    let r = api
        .http
        .head(url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await?;
    let r = api.check(r).await?;
    r.headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the server did not say the upload offset")
}

pub async fn files(args: &ClientArgs, action: FilesAction) -> Result<()> {
    let api = Api::new(args);
    match action {
        FilesAction::List => {
            let v = api.get("/api/files", &[]).await?;
            if args.json {
                return print_json(&v);
            }
            let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            print_table(items, &["path", "size", "modified"]);
            println!("{} files", items.len());
        }
        FilesAction::Get { path, output } => {
            let response = api
                .http
                .get(format!("{}/api/files/{path}", api.base))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            let bytes = api.check(response).await?.bytes().await?;
            let output = output
                .unwrap_or_else(|| PathBuf::from(path.rsplit('/').next().unwrap_or("download")));
            std::fs::write(&output, &bytes)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {} ({} bytes)", output.display(), bytes.len());
        }
        FilesAction::Rm { path } => {
            let response = api
                .http
                .delete(format!("{}/api/files/{path}", api.base))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            api.check(response).await?;
            if !args.json {
                println!("deleted {path}");
            }
        }
    }
    Ok(())
}
