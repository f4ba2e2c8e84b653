//! C-MOVE destinations of a project (`/api/projects/{project}/dicom-destinations…`): the AE
//! titles a C-MOVE through the project's called AE title may name, and where each listens.
//! Managed by the project's managers (the guard's `Project(Manage)` rows).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::error::{json_rejection, ApiResult};
use crate::responses::{DicomDestination, DicomDestinationList, ErrorBody};
use crate::AppState;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// Where C-MOVE may send a project's instances.
#[utoipa::path(get, path = "/api/projects/{project}/dicom-destinations", tag = "access",
    params(("project" = String, Path, description = "Project name (any case)")),
    responses(
        (status = 200, description = "The project's C-MOVE destinations, by AE title", body = DicomDestinationList),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn list_destinations(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<DicomDestinationList>> {
    let destinations = state.catalog.move_destinations(&project).await?;
    Ok(Json(DicomDestinationList {
        destinations: destinations.into_iter().map(Into::into).collect(),
    }))
}

/// Adds or replaces a C-MOVE destination of a project.
#[utoipa::path(put, path = "/api/projects/{project}/dicom-destinations/{ae_title}", tag = "access",
    params(
        ("project" = String, Path, description = "Project name (any case)"),
        ("ae_title" = String, Path, description = "The AE title C-MOVE requests name (1 to 16 characters)"),
    ),
    request_body = crate::requests::DicomDestinationBody,
    responses(
        (status = 200, description = "The destination as stored", body = DicomDestination),
        (status = 400, description = "Not an AE title, an empty host or port 0", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn put_destination(
    State(state): State<AppState>,
    Path((project, ae_title)): Path<(String, String)>,
    body: JsonBody<crate::requests::DicomDestinationBody>,
) -> ApiResult<Json<DicomDestination>> {
    let Json(body) = body.map_err(|e| {
        json_rejection(
            e,
            "{\"host\": \"10.0.0.5\", \"port\": 104, \"description\": \"...\"}",
        )
    })?;
    let stored = state
        .catalog
        .put_move_destination(
            &project,
            radport_catalog::MoveDestination {
                ae_title,
                host: body.host,
                port: body.port,
                description: body.description.unwrap_or_default(),
            },
        )
        .await?;
    Ok(Json(stored.into()))
}

/// Removes a C-MOVE destination of a project.
#[utoipa::path(delete, path = "/api/projects/{project}/dicom-destinations/{ae_title}", tag = "access",
    params(
        ("project" = String, Path, description = "Project name (any case)"),
        ("ae_title" = String, Path, description = "The destination's AE title"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not an AE title", body = ErrorBody),
        (status = 404, description = "No such project or destination", body = ErrorBody),
    ))]
pub(crate) async fn delete_destination(
    State(state): State<AppState>,
    Path((project, ae_title)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .catalog
        .delete_move_destination(&project, &ae_title)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
