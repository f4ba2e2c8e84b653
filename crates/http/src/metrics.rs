//! `GET /metrics`: radport's figures (`radport-metrics`) in the OpenMetrics text format that
//! Prometheus scrapes. The counters are this node's own; the job queue, shared by every node,
//! is read from the catalog at each scrape.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// This node's figures; the shared job queue as the catalog has it now.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "The figures, in the OpenMetrics text format \
        (counters of this node; the job queue of all)",
        content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let figures = radport_metrics::global();
    match state.catalog.job_queue().await {
        Ok(queue) => {
            let mut depth = Vec::with_capacity(queue.len() * 2);
            let mut oldest = Vec::with_capacity(queue.len());
            for kind in &queue {
                let name = kind.kind.as_str();
                depth.push((name, "queued", kind.queued));
                depth.push((name, "running", kind.running));
                oldest.push((name, kind.oldest_queued));
            }
            figures.set_job_queue(&depth, &oldest);
        }
        // The rest is still worth scraping; the error is counted as a catalog error.
        Err(e) => tracing::warn!(error = %e, "metrics: the job queue could not be read"),
    }
    (
        [(header::CONTENT_TYPE, radport_metrics::CONTENT_TYPE)],
        figures.render(),
    )
        .into_response()
}
