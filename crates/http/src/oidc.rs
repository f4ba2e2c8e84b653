//! Single sign-on with OpenID Connect, the HTTP side of `radport_access::oidc`: the web UI's
//! sign-in (`GET /api/oidc/login` → the provider → `GET /api/oidc/callback`, which starts a
//! session exactly as `POST /api/session` does), and the bearer JWTs the guard accepts
//! ([`bearer_principal`]).
//!
//! An account signed in by single sign-on is made at its first sign-in (without a password,
//! marked with its provider and subject) and gets its administrator flag and project roles from
//! the provider's claims at every sign-in: for these accounts the provider is the source of
//! roles. A local account of the same name is never taken over.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use radport_access::oidc::{Oidc, OidcError, PendingLogin};
use radport_access::Principal;
use radport_catalog::{CatalogError, NewAuditEvent, OidcAccount, Outcome};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::guard::cookie;
use crate::responses::ErrorBody;
use crate::server::ClientAddr;
use crate::AppState;

/// The cookie that keeps a sign-in under way (state, nonce, PKCE verifier, where to return).
pub const OIDC_COOKIE: &str = "radport_oidc";

/// How long a sign-in at the provider may take.
const PENDING_LIFETIME_SECS: u64 = 600;

/// Single sign-on as the server offers it.
#[derive(Clone, Debug)]
pub struct SingleSignOn {
    /// The provider.
    pub provider: Arc<Oidc>,
    /// What the sign-in button calls it ("Sign in with …").
    pub display_name: String,
}

/// `GET /api/oidc/login`'s query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LoginQuery {
    /// The local path to return to after signing in (e.g. `/#/gallery`); anything else: `/`.
    return_to: Option<String>,
}

/// `GET /api/oidc/callback`'s query, as the provider sends it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The state the sign-in was started with.
    state: Option<String>,
    /// The provider's refusal (`access_denied` …).
    error: Option<String>,
    /// Its description.
    error_description: Option<String>,
}

fn configured(state: &AppState) -> ApiResult<&SingleSignOn> {
    state.access.oidc.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "single sign-on (OIDC) is not configured on this server",
        )
    })
}

/// Starts a sign-in at the OpenID provider (authorization code flow with PKCE).
#[utoipa::path(get, path = "/api/oidc/login", tag = "access",
    params(LoginQuery),
    responses(
        (status = 302, description = "To the provider's sign-in page; a short-lived cookie (`radport_oidc`, `HttpOnly`, `SameSite=Lax`) keeps the sign-in's state"),
        (status = 400, description = "A query that cannot be read", body = ErrorBody),
        (status = 404, description = "Single sign-on (OIDC) is not configured", body = ErrorBody),
        (status = 502, description = "The provider cannot be reached or its discovery document is unusable", body = ErrorBody),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let sso = configured(&state)?;
    let Query(query) = query.map_err(crate::projects::bad_query)?;
    let start = sso
        .provider
        .start_login(query.return_to.as_deref().unwrap_or("/"))
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let mut headers = HeaderMap::new();
    let secure = if state.https { "; Secure" } else { "" };
    let value = format!(
        "{OIDC_COOKIE}={}; Path=/api/oidc; HttpOnly; SameSite=Lax; Max-Age={PENDING_LIFETIME_SECS}{secure}",
        start.pending.to_cookie()
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::SET_COOKIE, v);
    }
    let location = HeaderValue::from_str(&start.url).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "the provider's authorization endpoint is not a usable URL",
        )
    })?;
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::FOUND, headers).into_response())
}

/// Why a sign-in by the provider is refused (told on the sign-in page).
enum Refusal {
    Oidc(OidcError),
    Account(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Oidc(e) => write!(f, "{e}"),
            Refusal::Account(why) => f.write_str(why),
        }
    }
}

/// Where the provider sends the browser back: the sign-in is completed (code exchanged, ID
/// token checked, account made or updated from the claims) and a session started, as
/// `POST /api/session` starts one; or refused, back to the sign-in page with the reason.
#[utoipa::path(get, path = "/api/oidc/callback", tag = "access",
    params(CallbackQuery),
    responses(
        (status = 303, description = "Signed in (session cookies set): to the page the sign-in started from. Refused: to the sign-in page (`/#/login?sso_error=…`), without a session"),
        (status = 400, description = "A query that cannot be read", body = ErrorBody),
        (status = 404, description = "Single sign-on (OIDC) is not configured", body = ErrorBody),
    ))]
pub(crate) async fn callback(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    request_headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let sso = configured(&state)?;
    let Query(query) = query.map_err(crate::projects::bad_query)?;
    let addr = client.map_or_else(|| "unknown".to_string(), |c| c.0 .0.to_string());
    let pending = cookie(&request_headers, OIDC_COOKIE).and_then(|c| PendingLogin::from_cookie(&c));
    let mut actor = "single sign-on".to_string();
    let result = complete(&state, sso, &query, pending.as_ref(), &mut actor).await;
    let result = match result {
        Err(Err(e)) => return Err(e.into()),
        Err(Ok(refusal)) => Err(refusal),
        Ok(user) => Ok(user),
    };
    let event = NewAuditEvent {
        actor: actor.chars().filter(|c| !c.is_control()).take(64).collect(),
        address: addr,
        action: "sign-in".into(),
        target: String::new(),
        outcome: if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Refused
        },
        detail: match &result {
            Ok(_) => "method oidc".into(),
            Err(why) => format!("method oidc: {why}"),
        },
    };
    if let Err(e) = state.catalog.record_audit(&event).await {
        tracing::warn!(error = %e, "recording a sign-in in the audit trail failed");
    }
    let mut headers = match &result {
        Ok(user) => {
            tracing::info!(user, "signed in by single sign-on");
            crate::accounts::start_session(&state, user).await?
        }
        Err(why) => {
            // The reason can quote a claim (a user name that is an e-mail address): not at info.
            tracing::info!("single sign-on refused (the audit trail has the reason)");
            tracing::debug!(reason = %why, "single sign-on refused");
            HeaderMap::new()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{OIDC_COOKIE}=; Path=/api/oidc; Max-Age=0")) {
        headers.append(header::SET_COOKIE, v);
    }
    let return_to = pending.map_or_else(|| "/".to_string(), |p| p.return_to);
    let location = match &result {
        Ok(_) => return_to,
        Err(why) => {
            let mut to = format!(
                "/#/login?sso_error={}",
                url_encode(&why.to_string().chars().take(300).collect::<String>())
            );
            if let Some(next) = return_to.strip_prefix('/').filter(|n| n.starts_with("#/")) {
                to.push_str(&format!("&next={}", url_encode(next)));
            }
            to
        }
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

/// The sign-in's account name, or why it is refused (`Ok`), or a failure of the catalog
/// (`Err`).
async fn complete(
    state: &AppState,
    sso: &SingleSignOn,
    query: &CallbackQuery,
    pending: Option<&PendingLogin>,
    actor: &mut String,
) -> Result<String, Result<Refusal, CatalogError>> {
    let refused = |e: OidcError| Ok(Refusal::Oidc(e));
    if let Some(error) = &query.error {
        let description = query.error_description.as_deref().unwrap_or_default();
        let text: String = format!("{error} {description}")
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Err(refused(OidcError::Refused(text)));
    }
    let (Some(pending), Some(code), Some(given_state)) = (pending, &query.code, &query.state)
    else {
        return Err(refused(OidcError::State));
    };
    let identity = sso
        .provider
        .finish_login(code, given_state, pending)
        .await
        .map_err(refused)?;
    *actor = identity.username.clone();
    let account = OidcAccount {
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
    };
    let user = match state
        .catalog
        .sign_in_oidc_user(
            &identity.username,
            &account,
            identity.admin,
            &identity.memberships,
        )
        .await
    {
        Ok(user) => user,
        Err(CatalogError::Conflict(why)) => return Err(Ok(Refusal::Account(why))),
        Err(CatalogError::Invalid(why)) => return Err(Ok(Refusal::Account(why))),
        Err(e) => return Err(Err(e)),
    };
    if user.disabled {
        return Err(Ok(Refusal::Account("this account is disabled".into())));
    }
    Ok(user.name)
}

/// The principal of a bearer JWT from the provider (the guard's path for `Authorization:
/// Bearer` values that are not radport tokens): from its claims alone, nothing is written. A
/// name that belongs to a local account, or to another provider's or subject's, is refused, as
/// is a disabled account.
pub(crate) async fn bearer_principal(
    state: &AppState,
    sso: &SingleSignOn,
    token: &str,
) -> ApiResult<Principal> {
    let identity = sso
        .provider
        .validate_bearer(token)
        .await
        .map_err(|e| match e {
            OidcError::Provider(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the token cannot be checked now: {e}"),
            ),
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        })?;
    if let Some(user) = state.catalog.get_user(&identity.username).await? {
        let same = user
            .oidc
            .as_ref()
            .is_some_and(|o| o.issuer == identity.issuer && o.subject == identity.subject);
        if !same {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the token's user name belongs to an account that is not this single sign-on's",
            ));
        }
        if user.disabled {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this account is disabled",
            ));
        }
    }
    Ok(identity.principal())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
