//! `GET /api/health`: whether the server and its catalog answer, and how to reach it.

use axum::extract::State;
use axum::Json;

use crate::error::ApiResult;
use crate::responses::{Deployment, ErrorBody, Health};
use crate::AppState;

/// Whether the server and its catalog answer; this deployment's DICOM address.
#[utoipa::path(get, path = "/api/health", tag = "server",
    responses(
        (status = 200, description = "Up; the catalog answers", body = Health),
        (status = 503, description = "The catalog is busy or unreachable", body = ErrorBody),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    // A cheap query proves the catalog answers.
    state.catalog.list_projects().await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        catalog: format!("{:?}", state.catalog.dialect()).to_lowercase(),
        archive: state.archive.description().to_string(),
        deployment: Deployment {
            viewer: crate::viewer::installed(&state.viewer_dir).await,
            ..state.deployment.clone()
        },
    }))
}
