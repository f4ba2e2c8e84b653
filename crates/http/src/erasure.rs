//! Erasing series, studies and patients; copying and moving series between projects.
//!
//! Which series an erasure covers is decided once, by the guard, which checks the caller
//! against every project they are in and hands the checked list over as an
//! [`ErasureScope`]: a series arriving meanwhile is not erased under a check it never had.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use radport_catalog::Placement;

use crate::error::{json_rejection, ApiError, ApiResult};
use crate::projects::bad_query;
use crate::requests::{DeleteProjectQuery, PlaceSeries};
use crate::responses::{Erasure, ErrorBody, UnsharedSeries};
use crate::AppState;

/// The series an erasure request covers, as the guard checked them.
#[derive(Clone, Debug)]
pub(crate) struct ErasureScope(pub Vec<String>);

async fn erase(state: &AppState, scope: &ErasureScope) -> ApiResult<Json<Erasure>> {
    let erasure = radport_collector::erase_series(state.workflows.ingestor(), &scope.0).await?;
    Ok(Json(erasure.into()))
}

/// Erases a series: its instances, thumbnail, report, validation results and mappings; its
/// study and patient too if nothing else is left of them. The audit trail keeps that it
/// happened.
#[utoipa::path(delete, path = "/api/series/{series_uid}", tag = "erasure",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 200, description = "Erased", body = Erasure),
        (status = 404, description = "Not in the catalog", body = ErrorBody),
    ))]
pub(crate) async fn erase_series(
    State(state): State<AppState>,
    Extension(scope): Extension<ErasureScope>,
) -> ApiResult<Json<Erasure>> {
    erase(&state, &scope).await
}

/// Erases every series of a study (see erasing a series).
#[utoipa::path(delete, path = "/api/studies/{study_uid}", tag = "erasure",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    responses(
        (status = 200, description = "Erased", body = Erasure),
        (status = 404, description = "No series of it is in the catalog", body = ErrorBody),
    ))]
pub(crate) async fn erase_study(
    State(state): State<AppState>,
    Extension(scope): Extension<ErasureScope>,
) -> ApiResult<Json<Erasure>> {
    erase(&state, &scope).await
}

/// Erases every series of a patient (by Patient ID; see erasing a series). The audit trail
/// records a hash of the Patient ID, not the ID.
#[utoipa::path(delete, path = "/api/patients/{patient_id}", tag = "erasure",
    params(("patient_id" = String, Path, description = "Patient ID (percent-encoded)")),
    responses(
        (status = 200, description = "Erased", body = Erasure),
        (status = 404, description = "No series of the patient is in the catalog", body = ErrorBody),
    ))]
pub(crate) async fn erase_patient(
    State(state): State<AppState>,
    Extension(scope): Extension<ErasureScope>,
) -> ApiResult<Json<Erasure>> {
    erase(&state, &scope).await
}

fn place_body(
    body: Result<Json<PlaceSeries>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PlaceSeries> {
    let Json(body) = body.map_err(|e| {
        json_rejection(
            e,
            "a JSON body like {\"from\": \"lung\", \"to\": \"lung-2\", \"dataset\": \"selected\"}",
        )
    })?;
    Ok(body)
}

async fn place(
    state: &AppState,
    series_uid: &str,
    body: &PlaceSeries,
    remove_from_source: bool,
) -> ApiResult<StatusCode> {
    state
        .catalog
        .place_series(&Placement {
            series_uid,
            from: &body.from,
            to: &body.to,
            dataset: body.dataset.as_deref().filter(|d| !d.is_empty()),
            remove_from_source,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Copies a series into another project (viewers of `from`, contributors of `to`): the
/// series is then in both; nothing is copied in the archive.
#[utoipa::path(post, path = "/api/series/{series_uid}/copy", tag = "erasure",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    request_body = PlaceSeries,
    responses(
        (status = 204, description = "Copied"),
        (status = 400, description = "`to` is `admin` or `from`, or a name is not valid", body = ErrorBody),
        (status = 404, description = "A project does not exist, or the series is not in `from`", body = ErrorBody),
    ))]
pub(crate) async fn copy_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
    body: Result<Json<PlaceSeries>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let body = place_body(body)?;
    place(&state, &series_uid, &body, false).await
}

/// Moves a series from one project to another (managers of `from`, contributors of `to`).
#[utoipa::path(post, path = "/api/series/{series_uid}/move", tag = "erasure",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    request_body = PlaceSeries,
    responses(
        (status = 204, description = "Moved"),
        (status = 400, description = "`to` is `admin` or `from`, `from` is `admin`, or a name is not valid", body = ErrorBody),
        (status = 404, description = "A project does not exist, or the series is not in `from`", body = ErrorBody),
    ))]
pub(crate) async fn move_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
    body: Result<Json<PlaceSeries>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let body = place_body(body)?;
    place(&state, &series_uid, &body, true).await
}

/// Takes a series out of a project (its managers); it stays in its other projects and in
/// `admin`.
#[utoipa::path(delete, path = "/api/projects/{project}/series/{series_uid}", tag = "erasure",
    params(("project" = String, Path, description = "Project name (any case)"),
           ("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 204, description = "Removed from the project"),
        (status = 400, description = "The project is `admin`", body = ErrorBody),
        (status = 404, description = "The series is not in the project", body = ErrorBody),
    ))]
pub(crate) async fn remove_series_from_project(
    State(state): State<AppState>,
    Path((project, series_uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if state
        .catalog
        .remove_series_from_project(&series_uid, &project)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("series {series_uid} is not in project {project}"),
        ))
    }
}

/// How many series of the project no other project holds: what deleting it with
/// `erase_unshared_series=true` would erase.
#[utoipa::path(get, path = "/api/projects/{project}/unshared-series", tag = "erasure",
    params(("project" = String, Path, description = "Project name (any case)")),
    responses(
        (status = 200, description = "The count", body = UnsharedSeries),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn unshared_series(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<UnsharedSeries>> {
    crate::accounts::project_or_404(&state, &project).await?;
    let series = state.catalog.unshared_series(&project).await?;
    Ok(Json(UnsharedSeries {
        count: series.len() as u64,
    }))
}

/// Deletes a project: its mappings and datasets; its series stay in `admin` and their other
/// projects, unless `erase_unshared_series=true`, which erases those no other project holds.
#[utoipa::path(delete, path = "/api/projects/{project}", tag = "projects",
    params(("project" = String, Path, description = "Project name (any case)"), DeleteProjectQuery),
    responses(
        (status = 200, description = "Deleted; what was erased with it (nothing unless asked)", body = Erasure),
        (status = 400, description = "`admin` cannot be deleted", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn delete_project(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<DeleteProjectQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Erasure>> {
    let Query(query) = query.map_err(bad_query)?;
    let candidates = if query.erase_unshared_series {
        state.catalog.unshared_series(&project).await?
    } else {
        Vec::new()
    };
    state.catalog.delete_project(&project).await?;
    // Only what is now in no project but admin: a series copied elsewhere meanwhile stays.
    let mut unshared = Vec::with_capacity(candidates.len());
    for uid in candidates {
        let projects = state.catalog.projects_of_series(&uid).await?;
        if projects
            .iter()
            .all(|p| p.eq_ignore_ascii_case(radport_catalog::ADMIN_PROJECT))
        {
            unshared.push(uid);
        }
    }
    erase(&state, &ErasureScope(unshared)).await
}
