//! DICOMweb (QIDO-RS, WADO-RS with rendered pictures and thumbnails, STOW-RS) at `/dicomweb` (everything the caller may see) and
//! `/projects/{project}/dicomweb` (one project): thin handlers over `radport-dicomweb`.
//!
//! The guard has checked the route's rule before a handler runs (`View` of the project of the
//! path, `Contribute` to it for a store; at `/dicomweb`, any signed-in caller, whose answers are
//! narrowed to the projects they may see, and stores into `admin`, for administrators only).
//! Handlers turn the path into a [`Target`], the caller into a [`Scope`], and stream the engine's
//! answer. These routes are DICOMweb's, not the JSON API's: they are listed in [`ROUTES`] (the
//! guard's test walks it) and described by the conformance statement, not by the OpenAPI
//! document.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Extension, Router};
use futures::{StreamExt, TryStreamExt};
use radport_access::Principal;
use radport_catalog::Route;
use radport_dicomweb::stow::{StoreTarget, DEFAULT_DATASET};
use radport_dicomweb::wado::Streamed;
use radport_dicomweb::{media, qido, DicomWebError, Level, Scope, Target};

use crate::error::ApiError;
use crate::AppState;

/// The roots DICOMweb is served under.
const ROOTS: [&str; 2] = ["/dicomweb", "/projects/{project}/dicomweb"];

/// What a route under a root does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// QIDO-RS at a level.
    Search(Level),
    /// WADO-RS instances.
    Retrieve,
    /// WADO-RS metadata.
    Metadata,
    /// WADO-RS frames.
    Frames,
    /// WADO-RS bulk data.
    BulkData,
    /// WADO-RS rendered (JPEG or PNG).
    Rendered,
    /// WADO-RS thumbnail.
    Thumbnail,
    /// STOW-RS.
    Store,
}

/// Every DICOMweb route below a root: method, path, service.
const SERVICES: &[(&str, &str, Service)] = &[
    ("GET", "/studies", Service::Search(Level::Study)),
    ("GET", "/series", Service::Search(Level::Series)),
    ("GET", "/instances", Service::Search(Level::Instance)),
    (
        "GET",
        "/studies/{study}/series",
        Service::Search(Level::Series),
    ),
    (
        "GET",
        "/studies/{study}/instances",
        Service::Search(Level::Instance),
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances",
        Service::Search(Level::Instance),
    ),
    ("GET", "/studies/{study}", Service::Retrieve),
    ("GET", "/studies/{study}/series/{series}", Service::Retrieve),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}",
        Service::Retrieve,
    ),
    ("GET", "/studies/{study}/metadata", Service::Metadata),
    (
        "GET",
        "/studies/{study}/series/{series}/metadata",
        Service::Metadata,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/metadata",
        Service::Metadata,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
        Service::Frames,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
        Service::BulkData,
    ),
    ("GET", "/studies/{study}/rendered", Service::Rendered),
    (
        "GET",
        "/studies/{study}/series/{series}/rendered",
        Service::Rendered,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/rendered",
        Service::Rendered,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
        Service::Rendered,
    ),
    ("GET", "/studies/{study}/thumbnail", Service::Thumbnail),
    (
        "GET",
        "/studies/{study}/series/{series}/thumbnail",
        Service::Thumbnail,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
        Service::Thumbnail,
    ),
    (
        "GET",
        "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
        Service::Thumbnail,
    ),
    ("POST", "/studies", Service::Store),
    ("POST", "/studies/{study}", Service::Store),
];

/// Every DICOMweb route: method and full path template (for the guard and its tests).
pub fn routes_list() -> Vec<(&'static str, String)> {
    ROOTS
        .iter()
        .flat_map(|root| {
            SERVICES
                .iter()
                .map(move |(method, path, _)| (*method, format!("{root}{path}")))
        })
        .collect()
}

/// The service of a full route template, if it is a DICOMweb route.
pub(crate) fn service_of(method: &str, template: &str) -> Option<Service> {
    let path = ROOTS.iter().find_map(|root| template.strip_prefix(root))?;
    SERVICES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, s)| *s)
}

/// The DICOMweb routes, to put behind the guard.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for root in ROOTS {
        for (method, path, service) in SERVICES {
            let service = *service;
            let handler: MethodRouter<AppState> = match *method {
                "POST" => axum::routing::post(
                    move |state: State<AppState>,
                          principal: Extension<Principal>,
                          params: Path<HashMap<String, String>>,
                          query: Query<Vec<(String, String)>>,
                          request: Request| async move {
                        store(state, principal, params, query, request).await
                    },
                ),
                _ => get(
                    move |state: State<AppState>,
                          principal: Extension<Principal>,
                          params: Path<HashMap<String, String>>,
                          query: Query<Vec<(String, String)>>,
                          headers: HeaderMap| async move {
                        read(service, state, principal, params, query, headers).await
                    },
                ),
            };
            router = router.route(&format!("{root}{path}"), handler);
        }
    }
    router
}

impl From<DicomWebError> for ApiError {
    fn from(e: DicomWebError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match e {
            DicomWebError::Catalog(c) => c.into(),
            // Says what this server cannot do; not a failure to log.
            DicomWebError::NotImplemented(m) => ApiError::new(status, m),
            DicomWebError::Archive(a) => a.into(),
            other if status.is_server_error() => {
                ApiError::internal(status, "a DICOMweb request failed", &other)
            }
            other => ApiError::new(status, other.to_string()),
        }
    }
}

/// A path's project must exist (a search in a missing project is 404, not empty).
async fn project_exists(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(), ApiError> {
    if let Some(project) = params.get("project") {
        if state.catalog.find_project(project).await?.is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no project {project:?}"),
            ));
        }
    }
    Ok(())
}

/// The caller's view: one project (the path's), or every project they may see.
fn scope_of(params: &HashMap<String, String>, principal: &Principal) -> Scope {
    match params.get("project") {
        Some(project) => Scope::project(project),
        None => match principal.visible_projects() {
            None => Scope::All,
            Some(projects) => Scope::Projects(projects),
        },
    }
}

fn target_of(params: &HashMap<String, String>) -> Target {
    Target {
        study: params.get("study").cloned(),
        series: params.get("series").cloned(),
        instance: params.get("instance").cloned(),
    }
}

/// The root URL of the request's DICOMweb service, as the client addressed it: behind a
/// proxy, its `X-Forwarded-Host` and `X-Forwarded-Proto`; else the `Host` header, with this
/// server's port when the client left it out (the `dicomweb-client` package does).
fn base_url(state: &AppState, headers: &HeaderMap, params: &HashMap<String, String>) -> String {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or_default().trim().to_string())
            .filter(|v| {
                !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
    };
    let scheme = match text("x-forwarded-proto").as_deref() {
        Some("https") => "https",
        Some("http") => "http",
        _ if state.https => "https",
        _ => "http",
    };
    let host = match text("x-forwarded-host") {
        Some(host) => host,
        None => {
            let host = text("host").unwrap_or_else(|| "localhost".to_string());
            let default_port = if state.https { 443 } else { 80 };
            let has_port = host
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.ends_with(']'));
            if has_port || state.http_port == default_port {
                host
            } else {
                format!("{host}:{}", state.http_port)
            }
        }
    };
    match params.get("project") {
        Some(project) => format!("{scheme}://{host}/projects/{project}/dicomweb"),
        None => format!("{scheme}://{host}/dicomweb"),
    }
}

fn accept_of(headers: &HeaderMap) -> Vec<media::MediaRange> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    media::accept(&values)
}

fn streamed(state: &AppState, answer: Streamed, throttle: bool) -> Response {
    let body = if throttle {
        Body::from_stream(state.downloads.throttled(answer.body))
    } else {
        Body::from_stream(answer.body.map_err(std::io::Error::other))
    };
    let mut response = Response::new(body);
    if let Ok(value) = HeaderValue::from_str(&answer.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

async fn read(
    service: Service,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    project_exists(&state, &params).await?;
    let scope = scope_of(&params, &principal);
    let target = target_of(&params);
    let accept = accept_of(&headers);
    let engine = &state.dicomweb;
    Ok(match service {
        Service::Search(level) => {
            if !media::accepts_json(&accept) {
                return Err(DicomWebError::NotAcceptable(
                    "search answers are application/dicom+json".into(),
                )
                .into());
            }
            let query = qido::parse(level, &target, &query, scope)?;
            let answer = engine
                .search(&query, &base_url(&state, &headers, &params))
                .await?;
            let mut response = (
                [(header::CONTENT_TYPE, "application/dicom+json")],
                answer.body,
            )
                .into_response();
            for warning in answer.warnings {
                if let Ok(value) = HeaderValue::from_str(&warning) {
                    response.headers_mut().append(header::WARNING, value);
                }
            }
            response
        }
        Service::Retrieve => {
            let answer = engine.retrieve(&target, &scope, &accept).await?;
            streamed(&state, answer, true)
        }
        Service::Metadata => {
            if !media::accepts_json(&accept) {
                return Err(DicomWebError::NotAcceptable(
                    "metadata is application/dicom+json".into(),
                )
                .into());
            }
            let answer = engine
                .metadata(&target, &scope, &base_url(&state, &headers, &params))
                .await?;
            streamed(&state, answer, false)
        }
        Service::Frames => {
            let list = params.get("frames").map(String::as_str).unwrap_or_default();
            let frames = radport_dicomweb::frames::parse_frame_list(list)?;
            let answer = engine.frames(&target, &frames, &scope, &accept).await?;
            streamed(&state, answer, false)
        }
        Service::BulkData => {
            let tag = params.get("tag").map(String::as_str).unwrap_or_default();
            let answer = engine.bulkdata(&target, tag, &scope, &accept).await?;
            streamed(&state, answer, true)
        }
        Service::Rendered | Service::Thumbnail => {
            let frames = match params.get("frames") {
                Some(list) => Some(radport_dicomweb::frames::parse_frame_list(list)?),
                None => None,
            };
            let picture = if service == Service::Rendered {
                engine
                    .rendered(&target, frames.as_deref(), &scope, &accept, &query)
                    .await?
            } else {
                engine
                    .thumbnail(&target, frames.as_deref(), &scope, &accept, &query)
                    .await?
            };
            (
                [
                    (header::CONTENT_TYPE, picture.media_type),
                    // Drawn from what the caller may see now: not for shared caches.
                    (header::CACHE_CONTROL, "private, max-age=300".to_string()),
                ],
                picture.bytes,
            )
                .into_response()
        }
        Service::Store => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "STOW-RS takes POST",
            ))
        }
    })
}

async fn store(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let project = params
        .get("project")
        .cloned()
        .unwrap_or_else(|| radport_catalog::ADMIN_PROJECT.to_string());
    let dataset = query
        .iter()
        .find(|(k, _)| k == "dataset")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| DEFAULT_DATASET.to_string());
    if !radport_catalog::is_valid_name(&dataset) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("dataset name {dataset:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
        ));
    }
    let target = StoreTarget {
        route: Route { project, dataset },
        source: format!(
            "dicomweb:{}",
            principal.user.as_deref().unwrap_or("anonymous")
        ),
        study: params.get("study").cloned(),
        base: base_url(&state, &headers, &params),
    };
    let limit = state.max_stow_body;
    let mut seen = 0u64;
    let body = request.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(std::io::Error::other(format!(
                "the request is larger than {limit} bytes (--dicomweb-max-store)"
            )));
        }
        Ok(chunk)
    });
    let answer = state
        .dicomweb
        .store(&content_type, Box::pin(body), &target)
        .await?;
    tracing::info!(
        project = %target.route.project,
        dataset = %target.route.dataset,
        stored = answer.stored,
        failed = answer.failed,
        "STOW-RS request stored"
    );
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        answer.body,
    )
        .into_response())
}
