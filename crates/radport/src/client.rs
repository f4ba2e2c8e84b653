//! The CLI's client commands: thin wrappers over the HTTP API, printing tables (or `--json`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the server is and how to print.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Base URL of a running radport.
    #[arg(
        long,
        env = "RADPORT_URL",
        default_value = "http://localhost:8080",
        global = true
    )]
    pub url: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// API token to send [default: the one `radport login` stored for --url].
    #[arg(long, env = "RADPORT_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ProjectAction {
    /// Create a project.
    Create { name: String },
    /// List projects.
    List,
    /// Delete a project (its series stay visible in admin).
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum DatasetAction {
    /// List the datasets of a project.
    List {
        #[arg(long, default_value = "admin")]
        project: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SeriesAction {
    /// List series visible in a project.
    List {
        #[arg(long, default_value = "admin")]
        project: String,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        modality: Option<String>,
        #[arg(long)]
        patient_id: Option<String>,
        /// Free text over patient, study and series descriptions.
        #[arg(long)]
        q: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one series and its instances.
    Show { series_uid: String },
    /// Download one stored instance, byte for byte.
    Get {
        series_uid: String,
        sop_instance_uid: String,
        /// Output file [default: SOP_INSTANCE_UID.dcm].
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Read every stored file of a series back and compare its size and checksum with the
    /// catalog's (a job on the server); waits for the answer. Exit status 1 if a file differs
    /// or is missing.
    Verify {
        series_uid: String,
        /// Seconds to wait for the job before giving up (it goes on on the server).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsAction {
    /// List jobs, newest first.
    List {
        /// queued, running, succeeded or failed.
        #[arg(long)]
        state: Option<String>,
        /// e.g. thumbnail.
        #[arg(long)]
        kind: Option<String>,
        /// Series Instance UID.
        #[arg(long)]
        series: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Api {
    /// A client of `--url` that sends the caller's token, if there is one.
    pub(crate) fn new(args: &ClientArgs) -> Self {
        let base = args.url.trim_end_matches('/').to_string();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = crate::login::token_for(&base, args.token.as_deref()) {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
        }
        Self {
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap_or_default(),
            base,
        }
    }

    /// A client of `--url` that sends no credentials.
    pub(crate) fn anonymous(args: &ClientArgs) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: args.url.trim_end_matches('/').to_string(),
        }
    }

    pub(crate) async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{status}: {message}")
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach radport at {}", self.base))?;
        Ok(self.check(response).await?.json().await?)
    }
}

pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows of JSON objects as an aligned table with the given columns.
pub(crate) fn print_table(items: &[Value], columns: &[&str]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for row in rows {
        println!("{}", line(row));
    }
}

pub(crate) fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn health(args: &ClientArgs) -> Result<()> {
    let api = Api::new(args);
    let v = api.get("/api/health", &[]).await?;
    if args.json {
        return print_json(&v);
    }
    println!(
        "{} (version {}, catalog {}, archive {})",
        cell(&v["status"]),
        cell(&v["version"]),
        cell(&v["catalog"]),
        cell(&v["archive"])
    );
    Ok(())
}

pub async fn project(args: &ClientArgs, action: ProjectAction) -> Result<()> {
    let api = Api::new(args);
    match action {
        ProjectAction::Create { name } => {
            let response = api
                .http
                .post(format!("{}/api/projects", api.base))
                .json(&serde_json::json!({ "name": name }))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            let v: Value = api.check(response).await?.json().await?;
            if args.json {
                return print_json(&v);
            }
            println!("created project {}", cell(&v["name"]));
            if v["dicom_addressable"] == false {
                eprintln!(
                    "note: DICOM senders cannot reach project {0}: an AE title holds 16 \
                     characters, kp- and at most {1} more, and senders cut longer ones without \
                     a word (kp-{0} would arrive as {2}). Upload into it with `radport upload` \
                     or the web UI, or choose a name of at most {1} characters.",
                    cell(&v["name"]),
                    radport_catalog::MAX_AE_TITLE_NAME,
                    format!("kp-{}", cell(&v["name"]))
                        .chars()
                        .take("kp-".len() + radport_catalog::MAX_AE_TITLE_NAME)
                        .collect::<String>()
                );
            }
        }
        ProjectAction::List => {
            let v = api.get("/api/projects", &[]).await?;
            if args.json {
                return print_json(&v);
            }
            print_table(
                v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                &["name", "dataset_count", "series_count", "created_at"],
            );
        }
        ProjectAction::Delete { name } => {
            let response = api
                .http
                .delete(format!("{}/api/projects/{}", api.base, name))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            api.check(response).await?;
            if !args.json {
                println!("deleted project {name}");
            }
        }
    }
    Ok(())
}

pub async fn dataset(args: &ClientArgs, action: DatasetAction) -> Result<()> {
    let api = Api::new(args);
    let DatasetAction::List { project } = action;
    let v = api
        .get(&format!("/api/projects/{project}/datasets"), &[])
        .await?;
    if args.json {
        return print_json(&v);
    }
    print_table(
        v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
        &["name", "series_count", "created_at", "last_arrival"],
    );
    Ok(())
}

pub async fn series(args: &ClientArgs, action: SeriesAction) -> Result<()> {
    let api = Api::new(args);
    match action {
        SeriesAction::List {
            project,
            dataset,
            modality,
            patient_id,
            q,
            limit,
            offset,
        } => {
            let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            for (k, v) in [
                ("dataset", dataset),
                ("modality", modality),
                ("patient_id", patient_id),
                ("q", q),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let v = api
                .get(&format!("/api/projects/{project}/series"), &query)
                .await?;
            if args.json {
                return print_json(&v);
            }
            let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            print_table(
                items,
                &[
                    "series_instance_uid",
                    "modality",
                    "patient_id",
                    "study_date",
                    "series_description",
                    "instance_count",
                    "datasets",
                ],
            );
            println!(
                "{} of {} series (offset {offset})",
                items.len(),
                cell(&v["total"])
            );
        }
        SeriesAction::Show { series_uid } => {
            let v = api.get(&format!("/api/series/{series_uid}"), &[]).await?;
            if args.json {
                return print_json(&v);
            }
            let s = &v["series"];
            for key in [
                "series_instance_uid",
                "study_instance_uid",
                "patient_id",
                "modality",
                "study_date",
                "series_description",
                "body_part_examined",
                "instance_count",
                "total_size",
            ] {
                println!("{key:<22}{}", cell(&s[key]));
            }
            println!("{:<22}{}", "projects", cell(&v["projects"]));
            println!();
            print_table(
                v["instances"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                &[
                    "instance_number",
                    "sop_instance_uid",
                    "transfer_syntax_uid",
                    "size",
                ],
            );
        }
        SeriesAction::Get {
            series_uid,
            sop_instance_uid,
            output,
        } => {
            let response = api
                .http
                .get(format!(
                    "{}/api/series/{series_uid}/instances/{sop_instance_uid}",
                    api.base
                ))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            let bytes = api.check(response).await?.bytes().await?;
            let path = output.unwrap_or_else(|| format!("{sop_instance_uid}.dcm").into());
            std::fs::write(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
        SeriesAction::Verify {
            series_uid,
            timeout,
        } => {
            let response = api
                .http
                .post(format!("{}/api/series/{series_uid}/verify", api.base))
                .send()
                .await
                .with_context(|| format!("cannot reach radport at {}", api.base))?;
            let queued: Value = api.check(response).await?.json().await?;
            let job_id = queued["job_id"].as_str().unwrap_or_default().to_string();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
            let job = loop {
                let page = api
                    .get(
                        "/api/jobs",
                        &[
                            ("kind", "verify".to_string()),
                            ("series", series_uid.clone()),
                            ("limit", "20".to_string()),
                        ],
                    )
                    .await?;
                let found = page["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|j| j["id"] == job_id.as_str()))
                    .cloned();
                if let Some(job) = found {
                    if job["state"] == "succeeded" || job["state"] == "failed" {
                        break job;
                    }
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "job {job_id} has not finished after {timeout} s; `radport jobs list --kind verify` shows it"
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            };
            if args.json {
                print_json(&job)?;
            } else if job["state"] == "succeeded" {
                println!(
                    "series {series_uid}: every stored file matches its recorded size and checksum"
                );
            } else {
                println!("series {series_uid}: {}", cell(&job["last_error"]));
            }
            if job["state"] != "succeeded" {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

pub async fn jobs(args: &ClientArgs, action: JobsAction) -> Result<()> {
    let api = Api::new(args);
    let JobsAction::List {
        state,
        kind,
        series,
        limit,
    } = action;
    let mut query = vec![("limit", limit.to_string())];
    for (k, v) in [("state", state), ("kind", kind), ("series", series)] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let v = api.get("/api/jobs", &query).await?;
    if args.json {
        return print_json(&v);
    }
    let items = v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    print_table(
        items,
        &[
            "kind",
            "state",
            "attempts",
            "series_uid",
            "updated_at",
            "last_error",
        ],
    );
    println!("{} of {} jobs", items.len(), cell(&v["total"]));
    Ok(())
}
