//! Signing in and out (`/login`, `/logout`, `/me`), accounts for admins (`/users`), and the
//! audit trail of commands (`/audit`).
//!
//! A signed-in browser carries a session cookie: `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it), `Secure` behind TLS. Requests that change
//! something must come from the tracker's own pages (`Origin`) and, with a body, be JSON.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::params;
use crate::identity::{LoginError, Role};
use crate::manage::{check_name, check_password};
use crate::net;
use crate::state::AppState;
use crate::store::{AccessChange, AuditQuery, AuditRow};
use crate::web::auth::{Admin, Anyone, SESSION_COOKIE, Someone, cookie};
use crate::web::error::{ApiError, AuthRefusals};
use crate::web::extract::{Path, Query, json_body};

/// Refuses a request that changes something from a page of another origin.
pub(crate) fn same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if net::origin_allowed(&state.settings.access.allowed_origins, headers) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "pages of other origins may not sign in or change accounts or groups".into(),
        ))
    }
}

/// The session cookie with `value`, living `max_age` seconds (0: removed).
fn session_cookie(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    value: &str,
    max_age: i64,
) -> HeaderValue {
    // A proxy on this machine or in TRUSTED_PROXIES says whether the browser came over TLS
    // (believing a forged header would only make the cookie stricter).
    let from_proxy = net::forwards_for(peer, &state.settings.access.trusted_proxy_nets);
    let over_tls = from_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = if state.settings.access.cookie_secure || over_tls {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A sign-in.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Credentials {
    name: String,
    password: String,
}

/// Who is signed in.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    /// Whether this browser or token stands for someone.
    signed_in: bool,
    name: Option<String>,
    role: Option<Role>,
    /// Whether it may read the map and the data.
    may_read: bool,
    /// Whether it may send commands to plugins.
    may_command: bool,
    /// Whether it manages accounts and reads the audit trail.
    is_admin: bool,
    /// Whether an account exists at all (none: `dereth-tracker user add` creates the first).
    accounts_exist: bool,
}

/// Signs in with a name and password: a session cookie.
#[utoipa::path(post, path = "/login", tag = "accounts", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = Me),
        (status = 400, description = "The body is not the expected JSON", body = crate::web::error::ErrorBody),
        (status = 401, description = "Wrong name or password", body = crate::web::error::ErrorBody),
        (status = 403, description = "Sent by a page of another origin", body = crate::web::error::ErrorBody),
        (status = 429, description = "Too many failed sign-ins from this client or for this account", body = crate::web::error::ErrorBody),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Credentials>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    same_origin(&state, &headers)?;
    let credentials = json_body(body)?;
    let client = net::client_ip(peer, &headers, &state.settings.access.trusted_proxy_nets);
    let account = credentials.name.trim().to_owned();
    if state.auth_failures.is_limited(&client) || state.login_failures.is_limited(&account) {
        return Err(ApiError::TooManyRequests(
            "too many failed sign-ins; wait a few minutes",
        ));
    }
    match state.directory.login(&account, &credentials.password).await {
        Ok((value, principal)) => {
            state.login_failures.clear(&account);
            tracing::info!(account = %principal.name, %client, "signed in");
            let max_age = i64::try_from(state.settings.access.session_ttl_hours)
                .unwrap_or(168)
                .saturating_mul(3600);
            let set = session_cookie(&state, peer, &headers, &value, max_age);
            let me = describe(&state, Some(&principal));
            Ok(([(header::SET_COOKIE, set)], Json(me)).into_response())
        }
        Err(LoginError::Wrong) => {
            state.auth_failures.record(&client);
            if state.login_failures.record(&account) == 1 {
                tracing::info!(%client, "sign-in refused: wrong name or password");
            }
            Err(ApiError::Unauthorized("wrong name or password"))
        }
        Err(LoginError::Store(err)) => Err(err.into()),
    }
}

/// Signs out: ends the session (and closes its sockets) and removes the cookie.
#[utoipa::path(post, path = "/logout", tag = "accounts", security(("session" = []), ()),
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "Sent by a page of another origin", body = crate::web::error::ErrorBody),
    ))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    same_origin(&state, &headers)?;
    if let Some(value) = cookie(&headers, SESSION_COOKIE).filter(|v| !v.is_empty()) {
        state.directory.logout(value).await?;
    }
    let gone = session_cookie(&state, peer, &headers, "", 0);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, gone)]).into_response())
}

fn describe(state: &AppState, who: Option<&crate::identity::Principal>) -> Me {
    let directory = &state.directory;
    Me {
        signed_in: who.is_some(),
        name: who.map(|p| p.name.to_string()),
        role: who.map(|p| p.role),
        may_read: who.is_some() || directory.open_reads(),
        may_command: who.is_some_and(|p| p.can(Role::Commander)) || directory.anyone_may_command(),
        is_admin: who.is_some_and(|p| p.can(Role::Admin)),
        accounts_exist: directory.has_accounts(),
    }
}

/// Who this browser (or token) is, and what it may do.
#[utoipa::path(get, path = "/me", tag = "accounts", security(("session" = []), ("token" = []), ()),
    responses((status = 200, description = "Who is signed in and what they may do", body = Me), AuthRefusals))]
pub(crate) async fn me(State(state): State<AppState>, Anyone(who): Anyone) -> Json<Me> {
    Json(describe(&state, who.as_ref()))
}

/// An account as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountView {
    name: String,
    role: Role,
}

/// Every account, by name.
#[utoipa::path(get, path = "/users", tag = "accounts", security(("session" = []), ("token" = [])),
    responses((status = 200, description = "The accounts", body = Vec<AccountView>), AuthRefusals))]
pub(crate) async fn users(State(state): State<AppState>, _admin: Admin) -> Json<Vec<AccountView>> {
    Json(
        state
            .directory
            .accounts()
            .into_iter()
            .map(|(name, role)| AccountView { name, role })
            .collect(),
    )
}

/// A new account, or a change to one.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AccountChange {
    /// The account's name (for a new one).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    /// A new password (at least 10 characters); empty or absent on a new account: one is
    /// generated and answered once.
    #[serde(default)]
    password: Option<String>,
}

/// An account created or changed; a generated password is shown here once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountDone {
    name: String,
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

fn hash(password: &str) -> Result<String, ApiError> {
    crate::identity::secrets::hash_password(password).map_err(|e| ApiError::Internal(Box::new(e)))
}

fn refused(err: crate::manage::ManageError) -> ApiError {
    match err {
        crate::manage::ManageError::Refused(why) => ApiError::BadRequest(why),
        crate::manage::ManageError::Store(err) => err.into(),
    }
}

/// Refuses a change that would leave the tracker without an admin.
fn keeps_an_admin(state: &AppState, name: &str, new_role: Option<Role>) -> Result<(), ApiError> {
    let admins: Vec<String> = state
        .directory
        .accounts()
        .into_iter()
        .filter(|(_, r)| *r == Role::Admin)
        .map(|(n, _)| n)
        .collect();
    let last = admins.len() == 1 && admins.iter().any(|a| a == name);
    if last && new_role != Some(Role::Admin) {
        return Err(ApiError::Conflict(
            "this is the last admin: make another admin first".into(),
        ));
    }
    Ok(())
}

/// Creates an account.
#[utoipa::path(post, path = "/users", tag = "accounts", security(("session" = []), ("token" = [])),
    request_body = AccountChange,
    responses(
        (status = 201, description = "Created (a generated password is answered once)", body = AccountDone),
        (status = 400, description = "A bad name, role or password", body = crate::web::error::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::web::error::ErrorBody),
        AuthRefusals,
    ))]
pub(crate) async fn add_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    headers: HeaderMap,
    body: Result<Json<AccountChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    same_origin(&state, &headers)?;
    let change = json_body(body)?;
    let name = change.name.unwrap_or_default().trim().to_owned();
    check_name(&name).map_err(refused)?;
    let role = change.role.ok_or_else(|| {
        ApiError::BadRequest("`role` is required: viewer, commander or admin".into())
    })?;
    if state.directory.accounts().iter().any(|(n, _)| *n == name) {
        return Err(ApiError::Conflict(format!(
            "an account named `{name}` exists"
        )));
    }
    let (password, generated) = match change.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            check_password(&p).map_err(refused)?;
            (p, false)
        }
        None => (crate::identity::secrets::new_secret(""), true),
    };
    let put = AccessChange::PutAccount {
        name: name.clone(),
        role: role.name().to_owned(),
        password_hash: hash(&password)?,
    };
    state.directory.change(&put).await?;
    tracing::info!(admin = %admin.name, account = %name, %role, "account created");
    let done = AccountDone {
        name,
        role: Some(role),
        password: generated.then_some(password),
    };
    Ok((StatusCode::CREATED, Json(done)).into_response())
}

/// Changes an account's role or password (its open sockets close when its role is lowered;
/// a new password signs it out everywhere).
#[utoipa::path(patch, path = "/users/{name}", tag = "accounts", security(("session" = []), ("token" = [])),
    params(("name" = String, Path, description = "Account name")), request_body = AccountChange,
    responses(
        (status = 200, description = "Changed", body = AccountDone),
        (status = 400, description = "A bad role or password", body = crate::web::error::ErrorBody),
        (status = 404, description = "No such account", body = crate::web::error::ErrorBody),
        (status = 409, description = "It would leave no admin", body = crate::web::error::ErrorBody),
        AuthRefusals,
    ))]
pub(crate) async fn change_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<AccountChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AccountDone>, ApiError> {
    same_origin(&state, &headers)?;
    let change = json_body(body)?;
    if !state.directory.accounts().iter().any(|(n, _)| *n == name) {
        return Err(ApiError::NotFound(format!("no account named `{name}`")));
    }
    if let Some(role) = change.role {
        keeps_an_admin(&state, &name, Some(role))?;
        let set = AccessChange::SetRole {
            name: name.clone(),
            role: role.name().to_owned(),
        };
        state.directory.change(&set).await?;
    }
    if let Some(password) = change.password.filter(|p| !p.is_empty()) {
        check_password(&password).map_err(refused)?;
        let set = AccessChange::SetPassword {
            name: name.clone(),
            password_hash: hash(&password)?,
        };
        state.directory.change(&set).await?;
    }
    tracing::info!(admin = %admin.name, account = %name, "account changed");
    Ok(Json(AccountDone {
        name,
        role: change.role,
        password: None,
    }))
}

/// Removes an account: its browsers are signed out and their sockets closed.
#[utoipa::path(delete, path = "/users/{name}", tag = "accounts", security(("session" = []), ("token" = [])),
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such account", body = crate::web::error::ErrorBody),
        (status = 409, description = "It is the last admin", body = crate::web::error::ErrorBody),
        AuthRefusals,
    ))]
pub(crate) async fn remove_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    same_origin(&state, &headers)?;
    keeps_an_admin(&state, &name, None)?;
    let removed = state
        .directory
        .change(&AccessChange::RemoveAccount { name: name.clone() })
        .await?;
    if !removed {
        return Err(ApiError::NotFound(format!("no account named `{name}`")));
    }
    tracing::info!(admin = %admin.name, account = %name, "account removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of `/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only commands to this character (required unless an admin asks).
    #[param(value_type = Option<String>, max_length = 64)]
    character: Option<String>,
    /// Only entries older than this id (the `next_before` of the previous page).
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// Entries per page (1 to 1,000, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    entries: Vec<AuditRow>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<i64>,
}

/// Every command sent to plugins: who, which character, the text, the result, when. Admins
/// read all of it; commanders read one character's history (`character` required).
#[utoipa::path(get, path = "/audit", tag = "accounts", security(("session" = []), ("token" = [])),
    params(AuditParams),
    responses((status = 200, description = "The newest commands first", body = AuditPage),
        (status = 400, description = "A parameter is invalid", body = crate::web::error::ErrorBody),
        AuthRefusals))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    Someone(who): Someone,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = params::number::<i64>("limit", p.limit.as_deref(), 1, 1_000)?.unwrap_or(100);
    let before = params::number::<i64>("before", p.before.as_deref(), 1, i64::MAX)?;
    let character = params::name("character", p.character.as_deref())?;
    // Admins read the whole trail; a commander reads one character's command history.
    let allowed = who.can(Role::Admin) || (who.can(Role::Commander) && character.is_some());
    if !allowed {
        return Err(ApiError::Forbidden(
            "the whole audit trail needs an admin; a commander may read one character's \
             (`character`)"
                .into(),
        ));
    }
    let query = AuditQuery {
        character,
        before,
        limit,
    };
    let entries = state.store.audit_log(&query).await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
