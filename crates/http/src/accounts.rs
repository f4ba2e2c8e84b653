//! Sessions, tokens, accounts and project members: the HTTP side of `radport-access`. Who may
//! call each route is decided by [`crate::guard`]; these handlers only do what was allowed.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use radport_access::{password, token, Principal};
use radport_catalog::{NewToken, User};

use crate::error::{json_rejection, ApiError, ApiResult};
use crate::guard::{cookie, CSRF_COOKIE, SESSION_COOKIE};
use crate::requests::{
    MemberRole, NewTokenRequest, NewUserRequest, PasswordChange, SignIn, UserChange,
};
use crate::responses::{
    ErrorBody, Member, MemberList, ProjectRole, Session, TokenCreated, TokenInfo, TokenList,
    UserCreated, UserInfo, UserList,
};
use crate::server::ClientAddr;
use crate::AppState;

/// How long a web session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn session_of(
    access: &crate::Access,
    principal: &Principal,
    must_change_password: bool,
) -> Session {
    Session {
        single_sign_on: access
            .oidc
            .as_ref()
            .map(|sso| crate::responses::SingleSignOnOption {
                display_name: sso.display_name.clone(),
                login: "/api/oidc/login".into(),
            }),
        access: access.mode.as_str().into(),
        signed_in: principal.user.is_some(),
        user: principal.user.clone(),
        admin: principal.admin,
        must_change_password,
        projects: principal
            .roles()
            .map(|(project, role)| ProjectRole {
                project: project.to_string(),
                role: role.into(),
            })
            .collect(),
    }
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/session", tag = "access",
    responses((status = 200, description = "The caller (signed in or not)", body = Session)))]
pub(crate) async fn whoami(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Session>> {
    let must_change = match &principal.user {
        Some(name) => state
            .catalog
            .get_user(name)
            .await?
            .is_some_and(|u| u.must_change_password),
        None => false,
    };
    Ok(Json(session_of(&state.access, &principal, must_change)))
}

/// Signs in with a name and password: the session is a cookie (`HttpOnly`, `SameSite=Strict`),
/// with a second cookie whose value state-changing requests repeat in `X-CSRF-Token`.
#[utoipa::path(post, path = "/api/session", tag = "access",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in; cookies set", body = Session),
        (status = 400, description = "Not a JSON body with name and password", body = ErrorBody),
        (status = 401, description = "Wrong name or password, a disabled account, or too many failures", body = ErrorBody),
    ))]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    body: JsonBody<SignIn>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(|e| json_rejection(e, "{\"name\": …, \"password\": …}"))?;
    let addr = client.map_or_else(|| "unknown".to_string(), |c| c.0 .0.to_string());
    let result = state
        .access
        .authenticator
        .sign_in(&body.name, &body.password, &addr)
        .await;
    // Every sign-in, refused or not, under the name given (cut, printable only).
    let given: String = body
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let event = radport_catalog::NewAuditEvent {
        actor: given,
        address: addr.clone(),
        action: "sign-in".into(),
        target: String::new(),
        outcome: if result.is_ok() {
            radport_catalog::Outcome::Success
        } else {
            radport_catalog::Outcome::Refused
        },
        detail: result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default(),
    };
    if let Err(e) = state.catalog.record_audit(&event).await {
        tracing::warn!(error = %e, "recording a sign-in in the audit trail failed");
    }
    let signed_in = result.map_err(|e| match e {
        radport_access::Denied::Catalog(c) => c.into(),
        other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
    })?;
    let user = signed_in.principal.user.clone().unwrap_or_default();
    tracing::info!(user, "signed in");
    let headers = start_session(&state, &user).await?;
    let session = session_of(
        &state.access,
        &signed_in.principal,
        signed_in.must_change_password,
    );
    Ok((StatusCode::CREATED, headers, Json(session)).into_response())
}

/// Starts a web session for `user`: its token, and the cookies that carry it (the session,
/// `HttpOnly`, `SameSite=Strict`; the CSRF value the UI repeats in `X-CSRF-Token`).
pub(crate) async fn start_session(state: &AppState, user: &str) -> ApiResult<HeaderMap> {
    let issued = state
        .access
        .authenticator
        .start_session(user, SESSION_LIFETIME)
        .await?;
    let csrf = token::issue().secret;
    let max_age = SESSION_LIFETIME.as_secs();
    let secure = if state.https { "; Secure" } else { "" };
    let mut headers = HeaderMap::new();
    for value in [
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
            issued.secret
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    Ok(headers)
}

/// Signs out: the session's token is revoked and the cookies cleared.
#[utoipa::path(delete, path = "/api/session", tag = "access",
    responses((status = 204, description = "Signed out (also when not signed in)")))]
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(secret) = cookie(&request_headers, SESSION_COOKIE) {
        if let Some(t) = state.catalog.token_by_hash(&token::hash(&secret)).await? {
            state.catalog.revoke_token(&t.id).await?;
        }
    }
    let mut headers = HeaderMap::new();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0")) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// Changes the caller's own password (the current one is asked again).
#[utoipa::path(post, path = "/api/session/password", tag = "access",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The new password is too short or too long", body = ErrorBody),
        (status = 403, description = "The current password is wrong", body = ErrorBody),
    ))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    let Json(body) = body.map_err(|e| json_rejection(e, "{\"current\": …, \"new\": …}"))?;
    let name = principal.user.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "sign in to change your password")
    })?;
    let user = state
        .catalog
        .get_user(name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no such account"))?;
    let current_ok = user
        .password_hash
        .as_deref()
        .is_some_and(|h| password::verify(&body.current, h));
    if !current_ok {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the current password is wrong",
        ));
    }
    let hash = password::hash(&body.new)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    state.catalog.set_password(name, &hash, false).await?;
    tracing::info!(user = name, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a token for the caller, limited to a role and projects.
#[utoipa::path(post, path = "/api/tokens", tag = "access",
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Made; the secret is in `token`, shown this once", body = TokenCreated),
        (status = 400, description = "A bad name, role, project list or expiry", body = ErrorBody),
    ))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: JsonBody<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let Json(body) = body.map_err(|e| json_rejection(e, "{\"name\": …}"))?;
    let user = principal.user.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "tokens belong to accounts: sign in to make one",
        )
    })?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a token's name has 1 to 100 characters",
        ));
    }
    if let Some(projects) = &body.projects {
        if projects.is_empty() || projects.len() > 1000 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "projects lists 1 to 1000 projects (leave it out for all of yours)",
            ));
        }
    }
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days @ 1..=3650) => Some(
            (chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "expires_in_days is 1 to 3650",
            ))
        }
    };
    let issued = token::issue();
    let info = state
        .catalog
        .create_token(&NewToken {
            id: issued.id.clone(),
            user,
            name: name.to_string(),
            token_hash: issued.hash,
            role: body.role.map(Into::into),
            projects: body
                .projects
                .map(|ps| ps.iter().map(|p| p.to_ascii_lowercase()).collect()),
            expires_at,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: issued.secret,
            info: info.into(),
        }),
    ))
}

/// The caller's tokens (web sessions included).
#[utoipa::path(get, path = "/api/tokens", tag = "access",
    responses(
        (status = 200, description = "The caller's tokens", body = TokenList),
    ))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<TokenList>> {
    let items = match &principal.user {
        Some(user) => state
            .catalog
            .list_tokens(Some(user))
            .await?
            .into_iter()
            .map(TokenInfo::from)
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(TokenList { items }))
}

/// Revokes a token (the caller's own; administrators: anyone's).
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "access",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token, or revoked already", body = ErrorBody),
    ))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.catalog.revoke_token(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no token {id} that is not revoked"),
        ))
    }
}

async fn user_info(state: &AppState, user: User) -> ApiResult<UserInfo> {
    let projects = state
        .catalog
        .list_members(None, Some(&user.name))
        .await?
        .into_iter()
        .map(|m| ProjectRole {
            project: m.project.to_ascii_lowercase(),
            role: m.role.into(),
        })
        .collect();
    Ok(UserInfo {
        name: user.name,
        admin: user.is_admin,
        disabled: user.disabled,
        must_change_password: user.must_change_password,
        created_at: user.created_at,
        projects,
    })
}

/// Every account.
#[utoipa::path(get, path = "/api/users", tag = "access",
    responses(
        (status = 200, description = "Every account", body = UserList),
    ))]
pub(crate) async fn list_users(State(state): State<AppState>) -> ApiResult<Json<UserList>> {
    let mut items = Vec::new();
    for user in state.catalog.list_users().await? {
        items.push(user_info(&state, user).await?);
    }
    Ok(Json(UserList { items }))
}

/// Creates an account.
#[utoipa::path(post, path = "/api/users", tag = "access",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created (with the password drawn for it, if none was given)", body = UserCreated),
        (status = 400, description = "A bad name or password", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    body: JsonBody<NewUserRequest>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    let Json(body) = body.map_err(|e| json_rejection(e, "{\"name\": …}"))?;
    let (secret, drawn) = match body.password {
        Some(p) => (p, false),
        None => (password::random(), true),
    };
    let hash = password::hash(&secret)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let user = state
        .catalog
        .create_user(body.name.trim(), Some(&hash), body.admin, drawn)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserCreated {
            user: user_info(&state, user).await?,
            password: drawn.then_some(secret),
        }),
    ))
}

/// Changes an account: administration, disabled, a new drawn password.
#[utoipa::path(patch, path = "/api/users/{name}", tag = "access",
    params(("name" = String, Path, description = "User name")),
    request_body = UserChange,
    responses(
        (status = 200, description = "Changed (with the new password, if one was drawn)", body = UserCreated),
        (status = 400, description = "Not a JSON body", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ))]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: JsonBody<UserChange>,
) -> ApiResult<Json<UserCreated>> {
    let Json(body) = body.map_err(|e| json_rejection(e, "{\"disabled\": true} or the like"))?;
    if state.catalog.get_user(&name).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no user {name:?}"),
        ));
    }
    if let Some(admin) = body.admin {
        state.catalog.set_user_admin(&name, admin).await?;
    }
    if let Some(disabled) = body.disabled {
        state.catalog.set_user_disabled(&name, disabled).await?;
    }
    let mut drawn = None;
    if body.reset_password {
        let secret = password::random();
        let hash = password::hash(&secret)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        state.catalog.set_password(&name, &hash, true).await?;
        drawn = Some(secret);
    }
    let user = state
        .catalog
        .get_user(&name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no user {name:?}")))?;
    Ok(Json(UserCreated {
        user: user_info(&state, user).await?,
        password: drawn,
    }))
}

/// A 404 that names the project, unless it exists.
pub(crate) async fn project_or_404(state: &AppState, project: &str) -> ApiResult<()> {
    match state.catalog.find_project(project).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no project {project:?}"),
        )),
    }
}

/// The members of a project.
#[utoipa::path(get, path = "/api/projects/{project}/members", tag = "access",
    params(("project" = String, Path, description = "Project name (any case)")),
    responses(
        (status = 200, description = "The project's members", body = MemberList),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<MemberList>> {
    project_or_404(&state, &project).await?;
    let items = state
        .catalog
        .list_members(Some(&project), None)
        .await?
        .into_iter()
        .map(|m| Member {
            user: m.user,
            role: m.role.into(),
        })
        .collect();
    Ok(Json(MemberList { items }))
}

/// Gives an account a role in a project (replacing the one it had).
#[utoipa::path(put, path = "/api/projects/{project}/members/{user}", tag = "access",
    params(
        ("project" = String, Path, description = "Project name (any case)"),
        ("user" = String, Path, description = "User name"),
    ),
    request_body = MemberRole,
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Not a role", body = ErrorBody),
        (status = 404, description = "No such project or account", body = ErrorBody),
    ))]
pub(crate) async fn set_member(
    State(state): State<AppState>,
    Path((project, user)): Path<(String, String)>,
    body: JsonBody<MemberRole>,
) -> ApiResult<StatusCode> {
    let Json(body) = body.map_err(|e| json_rejection(e, "{\"role\": \"viewer\"}"))?;
    state
        .catalog
        .set_member(&project, &user, body.role.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an account from a project.
#[utoipa::path(delete, path = "/api/projects/{project}/members/{user}", tag = "access",
    params(
        ("project" = String, Path, description = "Project name (any case)"),
        ("user" = String, Path, description = "User name"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not a member", body = ErrorBody),
    ))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    Path((project, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if state.catalog.remove_member(&project, &user).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{user} is not a member of {project}"),
        ))
    }
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "access",
    params(crate::requests::AuditQuery),
    responses(
        (status = 200, description = "A page of the audit trail", body = crate::responses::AuditPage),
        (status = 400, description = "A filter value is not valid", body = ErrorBody),
    ))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    query: Result<
        axum::extract::Query<crate::requests::AuditQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> ApiResult<Json<crate::responses::AuditPage>> {
    let axum::extract::Query(query) = query.map_err(crate::projects::bad_query)?;
    Ok(Json(state.catalog.list_audit(&query.into()).await?.into()))
}

/// Which DICOM peers may store into a project.
#[utoipa::path(get, path = "/api/projects/{project}/dicom-rules", tag = "access",
    params(("project" = String, Path, description = "Project name (any case)")),
    responses(
        (status = 200, description = "The project's rules (empty lists: anyone)", body = crate::responses::DicomRules),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn get_dicom_rules(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<crate::responses::DicomRules>> {
    project_or_404(&state, &project).await?;
    Ok(Json(state.catalog.dicom_rules(&project).await?.into()))
}

/// Replaces which DICOM peers may store into a project; refused associations get an
/// A-ASSOCIATE-RJ and a row in the audit trail.
#[utoipa::path(put, path = "/api/projects/{project}/dicom-rules", tag = "access",
    params(("project" = String, Path, description = "Project name (any case)")),
    request_body = crate::responses::DicomRules,
    responses(
        (status = 200, description = "The rules as stored (normalised)", body = crate::responses::DicomRules),
        (status = 400, description = "Not an AE title or not a network", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
pub(crate) async fn set_dicom_rules(
    State(state): State<AppState>,
    Path(project): Path<String>,
    body: JsonBody<crate::responses::DicomRules>,
) -> ApiResult<Json<crate::responses::DicomRules>> {
    let Json(body) =
        body.map_err(|e| json_rejection(e, "{\"calling_ae_titles\": [...], \"networks\": [...]}"))?;
    let rules = radport_access::dicom::normalise(&radport_catalog::DicomRules {
        calling_ae_titles: body.calling_ae_titles,
        networks: body.networks,
    })
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    state.catalog.set_dicom_rules(&project, &rules).await?;
    Ok(Json(rules.into()))
}
