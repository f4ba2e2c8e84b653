//! The job queue as users watch it, workflows and their runs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use radport_access::Principal;

use crate::error::{json_rejection, ApiError, ApiResult};
use crate::projects::bad_query;
use crate::requests::{JobQuery, RunsQuery};
use crate::responses::{ErrorBody, JobPage, Workflow, WorkflowList, WorkflowRun, WorkflowRunList};
use crate::AppState;

/// A page of the job queue (thumbnails, validations, verifications, workflow runs), newest
/// first.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    params(JobQuery),
    responses(
        (status = 200, description = "A page of the jobs of the caller's projects' series (administrators: every job)", body = JobPage),
        (status = 400, description = "A filter value is not valid", body = ErrorBody),
    ))]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<JobPage>> {
    let Query(query) = query.map_err(bad_query)?;
    let mut filter: radport_catalog::JobFilter = query.into();
    // Others than administrators see the jobs of their projects' series.
    filter.projects = principal.visible_projects();
    Ok(Json(state.catalog.list_jobs(&filter).await?.into()))
}

/// The workflows radport runs, with their parameters.
#[utoipa::path(get, path = "/api/workflows", tag = "workflows",
    responses(
        (status = 200, description = "Every workflow", body = WorkflowList),
    ))]
pub(crate) async fn list_workflows() -> Json<WorkflowList> {
    let items = radport_workflows::definitions()
        .into_iter()
        .map(Workflow::from)
        .collect();
    Json(WorkflowList { items })
}

/// Starts a run of a workflow; it is queued and runs as a job.
#[utoipa::path(post, path = "/api/workflows/{name}/runs", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name (see `GET /api/workflows`)")),
    request_body(content = Object, description = "The parameters, by name (see the workflow's `parameters`); `{}` takes every default"),
    responses(
        (status = 201, description = "The queued run", body = WorkflowRun),
        (status = 400, description = "Unknown, missing or mistyped parameter", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ))]
pub(crate) async fn start_workflow_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<WorkflowRun>)> {
    let Json(params) = body.map_err(|e| json_rejection(e, "the parameters as a JSON object"))?;
    let run = state.workflows.start(&name, &params).await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

/// Workflow runs, newest first.
#[utoipa::path(get, path = "/api/workflow-runs", tag = "workflows",
    params(RunsQuery),
    responses(
        (status = 200, description = "Runs into the caller's projects, newest first", body = WorkflowRunList),
        (status = 400, description = "`limit` is not a number", body = ErrorBody),
    ))]
pub(crate) async fn list_workflow_runs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<WorkflowRunList>> {
    let Query(query) = query.map_err(bad_query)?;
    let items = state
        .catalog
        .list_workflow_runs(query.limit.unwrap_or(100))
        .await?
        .into_iter()
        // Runs into the caller's projects (a run names its project in its parameters).
        .filter(|run| {
            let project = run.params["project"].as_str().unwrap_or("admin");
            principal.may(radport_access::Action::View, Some(project))
        })
        .map(WorkflowRun::from)
        .collect();
    Ok(Json(WorkflowRunList { items }))
}

/// A workflow run: state, progress, item errors, log, series produced.
#[utoipa::path(get, path = "/api/workflow-runs/{id}", tag = "workflows",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = WorkflowRun),
        (status = 404, description = "No such run (or not in the caller's projects)", body = ErrorBody),
    ))]
pub(crate) async fn get_workflow_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkflowRun>> {
    let run = state
        .catalog
        .get_workflow_run(&id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no workflow run {id}")))?;
    Ok(Json(run.into()))
}
