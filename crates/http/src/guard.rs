//! The one point every API request passes through: who is asking, and whether the rule of
//! the route they call lets them.
//!
//! Who: with `--access enforced`, a token in `Authorization: Bearer rpt_…`, or the session
//! token in the `radport_session` cookie (then a state-changing request must also carry the
//! `X-CSRF-Token` header equal to the `radport_csrf` cookie, and an `Origin`, if sent, must be
//! this server). With `--access open`, everyone may do everything.
//!
//! Whether: every route has a [`Rule`] in [`rule`], looked up by method and path template; a
//! route without one is refused (500), and a test walks the OpenAPI document so that a new
//! route cannot be served without one. The rules that name a project take it from the path,
//! from the series of the path (a series in several projects is reachable through any), from
//! the workflow run of the path, or from the body of a run to start; files and uploads belong
//! to the account that uploaded them. Handlers receive the [`Principal`] as an extension and
//! use it only to narrow lists to what the caller may see.

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use radport_access::{Action, Mode, Principal};
use radport_catalog::{NewAuditEvent, Outcome, Subject};

use crate::erasure::ErasureScope;
use crate::error::ApiError;
use crate::AppState;

/// Name of the cookie that holds a web session's token.
pub const SESSION_COOKIE: &str = "radport_session";

/// Name of the cookie whose value state-changing requests of a session repeat in
/// [`CSRF_HEADER`].
pub const CSRF_COOKIE: &str = "radport_csrf";

/// The header that must repeat [`CSRF_COOKIE`].
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in caller; lists are narrowed to what the caller may see.
    SignedIn,
    /// Global administrators.
    Admin,
    /// The action on the project of path parameter `project`.
    Project(Action),
    /// The action on one of the projects of the series of path parameter `series_uid`.
    Series(Action),
    /// The action on the project of the workflow run of path parameter `id`.
    Run(Action),
    /// Starting a run: contributing to the project the body names, and the file it names
    /// being the caller's.
    StartRun,
    /// Uploading: contributing to some project.
    Upload,
    /// The caller's own upload of path parameter `id`.
    OwnUpload,
    /// The caller's own uploaded file of path parameter `path`.
    OwnFile,
    /// The caller's own token of path parameter `id`.
    OwnToken,
    /// Erasing the series of path parameter `series_uid`, `study_uid` or `patient_id`:
    /// managing every project they are in (`admin` aside; a series only in `admin` is for
    /// administrators). The checked series go to the handler as an [`ErasureScope`].
    Erase,
    /// Copying (`View`) or moving (`Manage`) the series of the path: the action on the body's
    /// `from`, and contributing to its `to`.
    Place(Action),
}

/// The rule of a route, by method and path template; `None`: the route has no rule.
pub(crate) fn rule(method: &Method, template: &str) -> Option<Rule> {
    use Action::*;
    use Rule::*;
    let m = method.as_str();
    if let Some(service) = crate::dicomweb::service_of(m, template) {
        let per_project = template.starts_with("/projects/{project}/");
        return Some(match (service, per_project) {
            (crate::dicomweb::Service::Store, true) => Project(Contribute),
            // Stores into `admin`, which only administrators may.
            (crate::dicomweb::Service::Store, false) => Admin,
            (_, true) => Project(View),
            // Answers narrowed to the projects the caller may see.
            (_, false) => SignedIn,
        });
    }
    Some(match (m, template) {
        ("GET", "/api/health" | "/api/health/live" | "/api/health/ready" | "/api/openapi.json") => {
            Public
        }
        ("GET" | "POST" | "DELETE", "/api/session") => Public,
        ("POST", "/api/session/password") => SignedIn,
        // Figures without patient data; a scraper signs in with any account's token.
        ("GET", "/metrics") => SignedIn,
        ("GET", "/api/oidc/login" | "/api/oidc/callback") => Public,
        ("GET", "/api/projects") => SignedIn,
        ("POST", "/api/projects") => Admin,
        ("DELETE", "/api/projects/{project}") => Admin,
        ("GET", "/api/projects/{project}/unshared-series") => Admin,
        (
            "DELETE",
            "/api/series/{series_uid}" | "/api/studies/{study_uid}" | "/api/patients/{patient_id}",
        ) => Erase,
        ("POST", "/api/series/{series_uid}/copy") => Place(View),
        ("POST", "/api/series/{series_uid}/move") => Place(Manage),
        ("DELETE", "/api/projects/{project}/series/{series_uid}") => Project(Manage),
        (
            "GET",
            "/api/projects/{project}/datasets"
            | "/api/projects/{project}/series"
            | "/api/projects/{project}/facets",
        ) => Project(View),
        ("GET", "/api/projects/{project}/members") => Project(Manage),
        ("PUT" | "DELETE", "/api/projects/{project}/members/{user}") => Project(Manage),
        ("GET" | "PUT", "/api/projects/{project}/dicom-rules") => Project(Manage),
        ("GET", "/api/projects/{project}/dicom-destinations") => Project(Manage),
        ("PUT" | "DELETE", "/api/projects/{project}/dicom-destinations/{ae_title}") => {
            Project(Manage)
        }
        (
            "GET",
            "/api/series/{series_uid}"
            | "/api/series/{series_uid}/instances/{sop_instance_uid}"
            | "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered"
            | "/api/series/{series_uid}/instances/{sop_instance_uid}/segmentation"
            | "/api/series/{series_uid}/thumbnail"
            | "/api/series/{series_uid}/download"
            | "/api/series/{series_uid}/validation"
            | "/api/series/{series_uid}/validation/report",
        ) => Series(View),
        ("POST", "/api/series/{series_uid}/verify") => Series(View),
        ("GET", "/api/jobs") => SignedIn,
        ("OPTIONS", "/api/uploads" | "/api/uploads/{id}") => Public,
        ("POST", "/api/uploads") => Upload,
        ("HEAD" | "PATCH" | "DELETE", "/api/uploads/{id}") => OwnUpload,
        ("GET", "/api/workflows") => SignedIn,
        ("POST", "/api/workflows/{name}/runs") => StartRun,
        ("GET", "/api/workflow-runs") => SignedIn,
        ("GET", "/api/workflow-runs/{id}") => Run(View),
        ("GET", "/api/files") => SignedIn,
        ("GET" | "DELETE", "/api/files/{*path}") => OwnFile,
        ("GET" | "POST", "/api/tokens") => SignedIn,
        ("DELETE", "/api/tokens/{id}") => OwnToken,
        ("GET" | "POST", "/api/users") => Admin,
        ("PATCH", "/api/users/{name}") => Admin,
        ("GET", "/api/audit") => Admin,
        _ => return None,
    })
}

/// The routes a session whose password must be changed may still use.
fn allowed_before_password_change(method: &Method, template: &str) -> bool {
    matches!(
        (method.as_str(), template),
        ("GET" | "DELETE", "/api/session") | ("POST", "/api/session/password")
    )
}

/// The middleware (`route_layer` of the API routes): admits or refuses, and records in the
/// audit trail every refusal, every change and every read of patient data.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let address = request
        .extensions()
        .get::<crate::server::ClientAddr>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
    let audited = audited_action(&method, &template);
    match admit(&state, request).await {
        Ok(admitted) => {
            let Admitted {
                request,
                actor,
                target,
            } = admitted;
            let response = next.run(request).await;
            if let Some(action) = audited {
                let status = response.status();
                let outcome = if status.is_success() || status.is_redirection() {
                    Outcome::Success
                } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    Outcome::Refused
                } else {
                    Outcome::Failure
                };
                audit(&state, actor, address, action, target, outcome, status).await;
            }
            response
        }
        Err((refusal, actor)) => {
            let response = refusal.into_response();
            if matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                let action = audited.unwrap_or_else(|| format!("{method} {template}"));
                let status = response.status();
                audit(
                    &state,
                    actor,
                    address,
                    action,
                    String::new(),
                    Outcome::Refused,
                    status,
                )
                .await;
            }
            response
        }
    }
}

/// What the audit trail calls a request, if it records it: changes (every method but GET,
/// HEAD and OPTIONS, sign-in excepted, which its handler records with the name given) and reads
/// of patient data.
fn audited_action(method: &Method, template: &str) -> Option<String> {
    if let Some(service) = crate::dicomweb::service_of(method.as_str(), template) {
        use crate::dicomweb::Service;
        // Frames, bulk data and thumbnails carry no identifiers; the metadata read (or the
        // search) before them is recorded.
        return match service {
            Service::Search(_) => Some("search (DICOMweb)".into()),
            Service::Retrieve => Some("retrieve (DICOMweb)".into()),
            Service::Metadata => Some("read metadata (DICOMweb)".into()),
            Service::Rendered => Some("view rendered (DICOMweb)".into()),
            Service::Frames | Service::BulkData | Service::Thumbnail => None,
            Service::Store => Some("store (DICOMweb)".into()),
        };
    }
    let read = match template {
        "/api/series/{series_uid}" => Some("read series"),
        "/api/series/{series_uid}/instances/{sop_instance_uid}" => Some("download instance"),
        "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered" => Some("view frame"),
        "/api/series/{series_uid}/download" => Some("download series"),
        "/api/series/{series_uid}/validation/report" => Some("read validation report"),
        "/api/files/{*path}" => Some("download file"),
        _ => None,
    };
    match *method {
        Method::GET | Method::HEAD => read.map(str::to_string),
        Method::OPTIONS => None,
        Method::POST if template == "/api/session" => None,
        _ => Some(format!("{method} {template}")),
    }
}

async fn audit(
    state: &AppState,
    actor: String,
    address: String,
    action: String,
    target: String,
    outcome: Outcome,
    status: StatusCode,
) {
    let event = NewAuditEvent {
        actor,
        address,
        action,
        target,
        outcome,
        detail: status.as_u16().to_string(),
    };
    if let Err(e) = state.catalog.record_audit(&event).await {
        tracing::warn!(error = %e, action = event.action, "recording an audit event failed");
    }
}

/// An admitted request, and what the audit trail says of it.
struct Admitted {
    request: Request,
    /// Who (a user name, `anonymous`, or `open access`).
    actor: String,
    /// On what: the path's parameters (a file's path is left out: names of uploads can name
    /// patients).
    target: String,
}

/// The audit trail's name of a caller.
fn actor_of(principal: &Principal, mode: Mode) -> String {
    match (&principal.user, mode) {
        (Some(user), _) => user.clone(),
        (None, Mode::Open) => "open access".into(),
        (None, Mode::Enforced) => "anonymous".into(),
    }
}

/// The request with the caller's [`Principal`] as an extension, or why it is refused (with the
/// caller's name for the audit trail).
async fn admit(state: &AppState, request: Request) -> Result<Admitted, (ApiError, String)> {
    let mut actor = "anonymous".to_string();
    let admitted = admit_as(state, request, &mut actor).await;
    admitted.map_err(|e| (e, actor))
}

async fn admit_as(
    state: &AppState,
    request: Request,
    actor: &mut String,
) -> Result<Admitted, ApiError> {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let rule = rule(&method, &template)
        .or_else(|| {
            (method == Method::HEAD)
                .then(|| rule(&Method::GET, &template))
                .flatten()
        })
        .ok_or_else(|| {
            tracing::error!(%method, template, "a route without an access rule was refused");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this route has no access rule; it is refused until it has one",
            )
        })?;
    let (mut parts, body) = request.into_parts();
    let principal = match state.access.mode {
        Mode::Open => Principal::everyone(),
        Mode::Enforced => {
            let caller = identify(state, &parts.headers, &method).await?;
            if let Some(caller) = &caller {
                if caller.must_change_password
                    && caller.by_session
                    && !allowed_before_password_change(&method, &template)
                {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "change your password first (POST /api/session/password)",
                    ));
                }
            }
            caller.map_or_else(Principal::anonymous, |c| c.principal)
        }
    };
    *actor = actor_of(&principal, state.access.mode);
    let params: Vec<(String, String)> =
        match RawPathParams::from_request_parts(&mut parts, state).await {
            Ok(params) => params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            Err(_) => Vec::new(),
        };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut body = body;
    let mut erasure_scope = None;
    if rule != Rule::Public && principal.user.is_none() && !principal.admin {
        return Err(unauthenticated());
    }
    let allowed = match rule {
        Rule::Public | Rule::SignedIn => true,
        Rule::Admin => principal.admin,
        Rule::Project(action) => principal.may(action, Some(&param("project"))),
        Rule::Series(action) => {
            let uid = param("series_uid");
            if principal.admin {
                true
            } else {
                let projects = state.catalog.projects_of_series(&uid).await?;
                if !projects
                    .iter()
                    .any(|p| principal.may(Action::View, Some(p)))
                {
                    // Not visible is not found: existence is not told to outsiders.
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("series {uid} is not in the catalog"),
                    ));
                }
                projects.iter().any(|p| principal.may(action, Some(p)))
            }
        }
        Rule::Run(action) => {
            let id = param("id");
            match state.catalog.get_workflow_run(&id).await? {
                None => true, // the handler answers 404
                Some(run) => {
                    let project = run.params["project"].as_str().unwrap_or("admin");
                    if !principal.may(Action::View, Some(project)) {
                        return Err(ApiError::new(
                            StatusCode::NOT_FOUND,
                            format!("no workflow run {id}"),
                        ));
                    }
                    principal.may(action, Some(project))
                }
            }
        }
        Rule::StartRun => {
            let (bytes, params) = json_body(state, body).await?;
            body = Body::from(bytes);
            let project = params["project"].as_str().unwrap_or("admin");
            let file = params["file"].as_str().unwrap_or_default();
            principal.may(Action::Contribute, Some(project))
                && owns_file(state, &principal, file).await?
        }
        Rule::Erase => {
            let (series_uid, study_uid) = (param("series_uid"), param("study_uid"));
            let patient_id = param("patient_id");
            let subject = if !series_uid.is_empty() {
                Subject::Series(&series_uid)
            } else if !study_uid.is_empty() {
                Subject::Study(&study_uid)
            } else {
                Subject::Patient(&patient_id)
            };
            let series = state.catalog.series_of(subject).await?;
            let projects = state.catalog.projects_of_series_set(&series).await?;
            let visible = principal.admin
                || projects
                    .iter()
                    .any(|p| principal.may(Action::View, Some(p)));
            if series.is_empty() || !visible {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "nothing of it is in the catalog",
                ));
            }
            let own: Vec<&String> = projects
                .iter()
                .filter(|p| !p.eq_ignore_ascii_case(radport_catalog::ADMIN_PROJECT))
                .collect();
            erasure_scope = Some(ErasureScope(series));
            principal.admin
                || (!own.is_empty() && own.iter().all(|p| principal.may(Action::Manage, Some(p))))
        }
        Rule::Place(action) => {
            let (bytes, fields) = json_body(state, body).await?;
            body = Body::from(bytes);
            let from = fields["from"].as_str().unwrap_or_default();
            let to = fields["to"].as_str().unwrap_or_default();
            principal.may(action, Some(from)) && principal.may(Action::Contribute, Some(to))
        }
        Rule::Upload => principal.contributes_somewhere(),
        Rule::OwnUpload => match state.catalog.get_upload(&param("id")).await? {
            None => true, // the handler answers 404
            Some(upload) => owns(&principal, upload.owner.as_deref()),
        },
        Rule::OwnFile => owns_file(state, &principal, &param("path")).await?,
        Rule::OwnToken => match state.catalog.get_token(&param("id")).await? {
            None => true,
            Some(token) => principal.admin || principal.user.as_deref() == Some(&token.user),
        },
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "your roles do not allow this",
        ));
    }
    let target = params
        .iter()
        .map(|(k, v)| match k.as_str() {
            "path" => "[file]".to_string(),
            "patient_id" => patient_digest(v),
            _ => v.clone(),
        })
        .collect::<Vec<_>>()
        .join("/");
    parts.extensions.insert(principal);
    if let Some(scope) = erasure_scope {
        parts.extensions.insert(scope);
    }
    Ok(Admitted {
        request: Request::from_parts(parts, body),
        actor: actor.clone(),
        target,
    })
}

/// How the audit trail names a patient: a digest of the Patient ID (it can tell whether a
/// given ID was erased, but does not keep the ID).
fn patient_digest(patient_id: &str) -> String {
    let hash = blake3::hash(patient_id.as_bytes()).to_hex();
    format!("patient#{}", &hash[..16])
}

/// The body of a request as bytes (to pass on) and as JSON (to read the rule's fields from;
/// `Null` if it is not JSON: the handler answers 400).
async fn json_body(
    state: &AppState,
    body: Body,
) -> Result<(axum::body::Bytes, serde_json::Value), ApiError> {
    let bytes = axum::body::to_bytes(body, state.max_json_body)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this endpoint accepts",
            )
        })?;
    let value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok((bytes, value))
}

fn owns(principal: &Principal, owner: Option<&str>) -> bool {
    principal.admin || (owner.is_some() && owner == principal.user.as_deref())
}

/// Whether the uploaded file at `path` is the caller's (an unknown path is: the handler
/// answers 404 without telling anything).
async fn owns_file(state: &AppState, principal: &Principal, path: &str) -> Result<bool, ApiError> {
    if principal.admin {
        return Ok(true);
    }
    let path = path.trim_matches('/');
    Ok(match state.catalog.upload_at(path).await? {
        Some(upload) => owns(principal, upload.owner.as_deref()),
        None => false,
    })
}

/// Who the request's credentials name; `None`: it has none.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Option<Identified>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Authorization must be `Bearer <token>`",
                )
            })?;
        let secret = secret.trim();
        if let Some(sso) = state.access.oidc.as_ref() {
            if !secret.starts_with(radport_access::token::PREFIX) {
                // A JWT of the OpenID provider: its principal comes from its claims.
                return Ok(Some(Identified {
                    principal: crate::oidc::bearer_principal(state, sso, secret).await?,
                    must_change_password: false,
                    by_session: false,
                }));
            }
        }
        let caller = state
            .access
            .authenticator
            .by_token(secret)
            .await
            .map_err(denied)?;
        return Ok(Some(Identified {
            principal: caller.principal,
            must_change_password: caller.must_change_password,
            by_session: false,
        }));
    }
    let Some(session) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_csrf(headers)?;
    }
    // A session that ended (signed out elsewhere, revoked, expired, account disabled) makes
    // the browser anonymous: its HttpOnly cookie cannot be removed by the page, and it must
    // not stand in the way of signing in again.
    let caller = match state.access.authenticator.by_token(&session).await {
        Ok(caller) => caller,
        Err(radport_access::Denied::Catalog(e)) => return Err(e.into()),
        Err(_) => return Ok(None),
    };
    Ok(Some(Identified {
        principal: caller.principal,
        must_change_password: caller.must_change_password,
        by_session: true,
    }))
}

struct Identified {
    principal: Principal,
    must_change_password: bool,
    by_session: bool,
}

/// A state-changing request of a session: same origin, and the CSRF cookie repeated in
/// [`CSRF_HEADER`].
fn check_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |why: &str| ApiError::new(StatusCode::FORBIDDEN, why.to_string());
    if let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return Err(refused("a request from another site (Origin) is refused"));
        }
    }
    let expected = cookie(headers, CSRF_COOKIE);
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (expected, given) {
        (Some(e), Some(g)) if !e.is_empty() && e == g => Ok(()),
        _ => Err(refused(
            "a session's state-changing request needs the X-CSRF-Token header (the radport_csrf cookie's value)",
        )),
    }
}

/// The value of cookie `name`, if the request has it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "sign in first: a session (POST /api/session) or `Authorization: Bearer <token>`",
    )
}

fn denied(e: radport_access::Denied) -> ApiError {
    match e {
        radport_access::Denied::Catalog(c) => c.into(),
        other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation the router serves has a rule (the router's own paths, `{*path}`
    /// included, as the guard looks them up).
    #[test]
    fn every_route_has_a_rule() {
        let doc = serde_json::to_value(crate::api_routes().into_openapi()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let method: Method = method.to_ascii_uppercase().parse().unwrap();
                assert!(rule(&method, path).is_some(), "{method} {path} has no rule");
                checked += 1;
            }
        }
        assert!(checked >= 30, "{checked} operations");
        let dicomweb = crate::dicomweb::routes_list();
        assert_eq!(dicomweb.len(), 48);
        for (method, path) in dicomweb {
            let method: Method = method.parse().unwrap();
            let rule = rule(&method, &path);
            let expected = match (method.as_str(), path.starts_with("/projects/")) {
                ("POST", true) => Rule::Project(Action::Contribute),
                ("POST", false) => Rule::Admin,
                (_, true) => Rule::Project(Action::View),
                (_, false) => Rule::SignedIn,
            };
            assert_eq!(rule, Some(expected), "{method} {path}");
        }
        assert_eq!(rule(&Method::GET, "/api/openapi.json"), Some(Rule::Public));
        assert_eq!(rule(&Method::GET, "/api/nothing"), None);
    }

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; radport_session=rpt_x; radport_csrf=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("rpt_x"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(check_csrf(&h).is_err(), "no header");
        h.insert(CSRF_HEADER, "abd".parse().unwrap());
        assert!(check_csrf(&h).is_err(), "wrong header");
        h.insert(CSRF_HEADER, "abc".parse().unwrap());
        assert!(check_csrf(&h).is_ok());
        h.insert(header::HOST, "pacs:8080".parse().unwrap());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(check_csrf(&h).is_err(), "another origin");
        h.insert(header::ORIGIN, "http://pacs:8080".parse().unwrap());
        assert!(check_csrf(&h).is_ok());
    }
}
