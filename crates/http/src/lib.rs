//! The HTTP API: a thin JSON layer over the catalog and the archive.
//!
//! Handlers validate input, call one catalog or archive function and shape the answer; no
//! business rule lives here. Only this crate knows JSON: the answers are its own types
//! ([`responses`]), built from the catalog's, and the query strings and bodies are its own
//! types too ([`requests`]). The OpenAPI document served at `/api/openapi.json` is derived
//! from those types and from the handlers' annotations (`utoipa`), and the router is built from
//! the same annotations, so every route served is documented. Errors are JSON
//! `{"error": "..."}` with a status code that says what kind of problem it is ([`error`]).

#![warn(missing_docs)]

mod accounts;
mod destinations;
pub mod dicomweb;
mod download;
mod erasure;
mod error;
mod guard;
mod health;
pub mod hosts;
mod metrics;
mod oidc;
mod openapi;
pub mod preview;
mod projects;
pub mod requests;
pub mod responses;
mod runs;
mod series;
pub mod server;
pub mod tls;
mod ui;
pub mod uploads;
pub mod viewer;

pub use download::{attachment, is_dicom_uid, uid_for_file_name, Downloads};
pub(crate) use download::{fnv1a, is_format_char};
pub(crate) use error::ApiResult;
pub use error::{without_file_names, ApiError};
pub use oidc::SingleSignOn;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use radport_archive::Archive;
use radport_catalog::Catalog;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The catalog.
    pub catalog: Catalog,
    /// The archive.
    pub archive: Archive,
    /// Facts about this deployment shown by `/api/health` (e.g. DIMSE port, AE title).
    pub deployment: responses::Deployment,
    /// Limits of uploads.
    pub uploads: uploads::UploadSettings,
    /// Starts workflow runs.
    pub workflows: radport_workflows::Workflows,
    /// Draws instances for `/rendered` (`None`: that endpoint answers 501).
    pub rendering: Option<preview::FrameRendering>,
    /// Reads of stored files for downloads.
    pub downloads: Downloads,
    /// Largest body of the JSON endpoints (everything but tus PATCH), in bytes.
    pub max_json_body: usize,
    /// Who may do what (see [`guard`]).
    pub access: Access,
    /// The host names requests may be addressed to (see [`hosts`]).
    pub allowed_hosts: hosts::AllowedHosts,
    /// Served over TLS: session cookies are `Secure`.
    pub https: bool,
    /// The port HTTP listens on (DICOMweb's URLs name it when a client's `Host` does not).
    pub http_port: u16,
    /// DICOMweb's engine (see [`dicomweb`]).
    pub dicomweb: radport_dicomweb::DicomWeb,
    /// Largest STOW-RS request body, in bytes.
    pub max_stow_body: u64,
    /// Where the OHIF viewer's files are (see [`viewer`]; served only once installed there).
    pub viewer_dir: std::path::PathBuf,
}

/// Access control of the API.
#[derive(Clone, Debug)]
pub struct Access {
    /// Whether requests must sign in.
    pub mode: radport_access::Mode,
    /// Checks sessions, tokens and passwords.
    pub authenticator: radport_access::Authenticator,
    /// Single sign-on with an OpenID provider (`None`: not configured).
    pub oidc: Option<SingleSignOn>,
}

/// Default of [`AppState::max_stow_body`]: 16 GiB.
pub const DEFAULT_MAX_STOW_BODY: u64 = 16 << 30;

/// Default of [`AppState::max_json_body`]: 1 MiB, far above any request of the API.
pub const DEFAULT_MAX_JSON_BODY: usize = 1024 * 1024;

/// The API's routes and their OpenAPI document, from the handlers' annotations.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(erasure::delete_project))
        .routes(routes!(erasure::unshared_series))
        .routes(routes!(erasure::erase_study))
        .routes(routes!(erasure::erase_patient))
        .routes(routes!(erasure::copy_series))
        .routes(routes!(erasure::move_series))
        .routes(routes!(erasure::remove_series_from_project))
        .routes(routes!(projects::list_datasets))
        .routes(routes!(projects::list_series))
        .routes(routes!(projects::series_facets))
        .routes(routes!(series::get_series, erasure::erase_series))
        .routes(routes!(series::get_instance_file))
        .routes(routes!(preview::get_rendered_instance))
        .routes(routes!(preview::get_segmentation))
        .routes(routes!(series::get_thumbnail))
        .routes(routes!(series::download_series))
        .routes(routes!(series::get_validation))
        .routes(routes!(series::get_validation_report))
        .routes(routes!(series::verify_series))
        .routes(routes!(runs::list_jobs))
        .routes(routes!(uploads::create, uploads::options))
        .routes(routes!(
            uploads::head,
            uploads::patch,
            uploads::terminate,
            uploads::options_of_upload
        ))
        .routes(routes!(runs::list_workflows))
        .routes(routes!(runs::start_workflow_run))
        .routes(routes!(runs::list_workflow_runs))
        .routes(routes!(runs::get_workflow_run))
        .routes(routes!(uploads::list_files))
        .routes(routes!(uploads::get_file, uploads::delete_file))
        .routes(routes!(
            accounts::whoami,
            accounts::sign_in,
            accounts::sign_out
        ))
        .routes(routes!(accounts::change_password))
        .routes(routes!(oidc::login))
        .routes(routes!(oidc::callback))
        .routes(routes!(accounts::create_token, accounts::list_tokens))
        .routes(routes!(accounts::revoke_token))
        .routes(routes!(accounts::list_users, accounts::create_user))
        .routes(routes!(accounts::update_user))
        .routes(routes!(accounts::list_members))
        .routes(routes!(accounts::set_member, accounts::remove_member))
        .routes(routes!(accounts::list_audit))
        .routes(routes!(
            accounts::get_dicom_rules,
            accounts::set_dicom_rules
        ))
        .routes(routes!(destinations::list_destinations))
        .routes(routes!(
            destinations::put_destination,
            destinations::delete_destination
        ))
}

/// The OpenAPI document of the API (what `/api/openapi.json` serves).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(api_routes().into_openapi())
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let (api, document) = api_routes().split_for_parts();
    let api = api.merge(dicomweb::routes());
    let document = std::sync::Arc::new(openapi::finish(document));
    // Every API route passes the guard (the UI's files and the fallback need no access).
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        guard::guard,
    ));
    api.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document.as_ref().clone()) }
        }),
    )
    .merge(ui::routes())
    .merge(viewer::routes(state.viewer_dir.clone()))
    .fallback(not_found)
    // Before anything else, and for the UI too: a request for a host that is not this server
    // (DNS rebinding) is refused.
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        hosts::check_host,
    ))
    // Bodies read by extractors (JSON); tus PATCH streams its body and is bounded by the
    // upload's length instead.
    .layer(DefaultBodyLimit::max(state.max_json_body))
    .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/openapi.json",
    )
}
