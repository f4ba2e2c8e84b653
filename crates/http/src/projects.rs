//! Projects, their datasets and their series lists.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use radport_access::Principal;

use crate::error::{json_rejection, ApiError, ApiResult};
use crate::requests::{CreateProject, SeriesQuery};
use crate::responses::{DatasetList, ErrorBody, Facets, Project, ProjectList, SeriesPage};
use crate::AppState;

/// A query string that could not be read, as a 400.
pub(crate) fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}"))
}

/// Every project.
#[utoipa::path(get, path = "/api/projects", tag = "projects",
    responses(
        (status = 200, description = "The projects the caller is in (administrators: every project, `admin` first)", body = ProjectList),
    ))]
pub(crate) async fn list_projects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<ProjectList>> {
    let items = state
        .catalog
        .list_projects()
        .await?
        .into_iter()
        .filter(|p| principal.role_in(&p.name).is_some())
        .map(Project::from)
        .collect();
    Ok(Json(ProjectList { items }))
}

/// Creates a project.
#[utoipa::path(post, path = "/api/projects", tag = "projects",
    request_body = CreateProject,
    responses(
        (status = 201, description = "Created", body = Project),
        (status = 400, description = "Not a valid project name", body = ErrorBody),
        (status = 409, description = "A project of that name (in any case) exists", body = ErrorBody),
    ))]
pub(crate) async fn create_project(
    State(state): State<AppState>,
    body: Result<Json<CreateProject>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let Json(body) =
        body.map_err(|e| json_rejection(e, "a JSON body like {\"name\": \"my-project\"}"))?;
    let project = state.catalog.create_project(body.name.trim()).await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

/// The datasets of a project.
#[utoipa::path(get, path = "/api/projects/{project}/datasets", tag = "projects",
    params(("project" = String, Path, description = "Project name (any case)")),
    responses(
        (status = 200, description = "The project's datasets", body = DatasetList),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn list_datasets(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<DatasetList>> {
    let items = state
        .catalog
        .list_datasets(&project)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(DatasetList { items }))
}

/// One page of a project's series under a filter.
#[utoipa::path(get, path = "/api/projects/{project}/series", tag = "series",
    params(("project" = String, Path, description = "Project name (any case)"), SeriesQuery),
    responses(
        (status = 200, description = "A page of series", body = SeriesPage),
        (status = 400, description = "A filter value is not valid", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn list_series(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SeriesPage>> {
    // Dates, limit and offset are checked by the catalog (a 400 that says what is wrong).
    let Query(query) = query.map_err(bad_query)?;
    let page = state.catalog.list_series(&project, &query.into()).await?;
    Ok(Json(page.into()))
}

/// Counts of a project's series per value of each filterable dimension.
#[utoipa::path(get, path = "/api/projects/{project}/facets", tag = "series",
    params(("project" = String, Path, description = "Project name (any case)"), SeriesQuery),
    responses(
        (status = 200, description = "Counts per facet value", body = Facets),
        (status = 400, description = "A filter value is not valid", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn series_facets(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Facets>> {
    let Query(query) = query.map_err(bad_query)?;
    let facets = state.catalog.series_facets(&project, &query.into()).await?;
    Ok(Json(facets.into()))
}
