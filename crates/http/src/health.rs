//! `GET /api/health`: whether the server and its catalog answer, and how to reach it; and the
//! probes of load balancers and orchestrators: `GET /api/health/live` (the process answers)
//! and `GET /api/health/ready` (it reaches its catalog and its archive: send it work).

use axum::extract::State;
use axum::Json;

use crate::error::ApiResult;
use crate::responses::{Deployment, ErrorBody, Health, Probe};
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

/// How long a readiness check waits for the catalog or the archive.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Liveness: the process answers HTTP (restart it if not). Checks nothing else, so that a
/// database outage does not get every node restarted.
#[utoipa::path(get, path = "/api/health/live", tag = "server",
    responses((status = 200, description = "The process answers", body = Probe)))]
pub(crate) async fn live() -> Json<Probe> {
    Json(Probe {
        status: "ok".into(),
        checks: Default::default(),
    })
}

/// Readiness: the catalog answers a query and the archive a metadata request, each within
/// [`READY_TIMEOUT`]; 503 otherwise (a load balancer sends this node nothing until it is
/// ready again).
#[utoipa::path(get, path = "/api/health/ready", tag = "server",
    responses(
        (status = 200, description = "Catalog and archive reachable", body = Probe),
        (status = 503, description = "The catalog or the archive is not reachable", body = Probe),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> (axum::http::StatusCode, Json<Probe>) {
    let catalog = match tokio::time::timeout(READY_TIMEOUT, state.catalog.list_projects()).await {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the catalog does not answer");
            "does not answer".to_string()
        }
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    let archive = match state.archive.ready(READY_TIMEOUT).await {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the archive does not answer");
            "does not answer".to_string()
        }
    };
    let ok = catalog == "ok" && archive == "ok";
    let checks = [
        ("catalog".to_string(), catalog),
        ("archive".to_string(), archive),
    ]
    .into_iter()
    .collect();
    (
        if ok {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Probe {
            status: if ok { "ok" } else { "unavailable" }.into(),
            checks,
        }),
    )
}
