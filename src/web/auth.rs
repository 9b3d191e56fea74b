//! Who a request stands for, and whether it may read or administer: a bearer API token, a
//! signed-in browser's session cookie, or the user an authenticating proxy names. Handlers say
//! what they need by taking [`Reader`] or [`Admin`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::identity::{Principal, Role};
use crate::net;
use crate::state::AppState;
use crate::web::error::ApiError;

/// The cookie a signed-in browser carries.
pub(crate) const SESSION_COOKIE: &str = "dereth_session";

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The bearer token of an `Authorization` header, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Who a request stands for, if anyone. A credential that is presented but wrong is an error
/// (it never falls back to reading anonymously), and costs the client part of its budget of
/// failed authentications.
pub(crate) async fn principal(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let client = net::client_ip(peer, headers, &state.settings.access.trusted_proxy_nets);
    let refuse = |why: &'static str| {
        state.auth_failures.record(&client);
        Err(ApiError::Unauthorized(why))
    };
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        if state.auth_failures.is_limited(&client) {
            return Err(ApiError::TooManyRequests(
                "too many failed authentications; wait a minute",
            ));
        }
        let Some(token) = bearer(headers) else {
            return refuse("the Authorization header must be `Bearer TOKEN`");
        };
        if let Some(p) = state.directory.bearer(token) {
            return Ok(Some(p));
        }
        // A token created a moment ago (by `dereth-tracker token add`) works at once.
        if state.directory.catch_up().await
            && let Some(p) = state.directory.bearer(token)
        {
            return Ok(Some(p));
        }
        return refuse("unknown or removed API token");
    }
    if let Some(value) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) {
        // An expired or ended session is no error: the browser is simply signed out.
        if let Some(p) = state.directory.session(value).await {
            return Ok(Some(p));
        }
    }
    if let Some(header) = &state.settings.access.auth_user_header {
        let trusted = &state.settings.access.trusted_proxy_nets;
        let from_proxy = trusted.iter().any(|net| net.contains(peer.ip()));
        if let (true, Some(user)) = (from_proxy, headers.get(header.as_str())) {
            let Some(user) = user.to_str().ok().map(str::trim).filter(|u| !u.is_empty()) else {
                return Ok(None);
            };
            return match state.directory.proxy_user(user) {
                Some(p) => Ok(Some(p)),
                None => Err(ApiError::Forbidden(format!(
                    "`{}` has no account on this tracker; ask an admin to create one",
                    crate::protocol::clip(user, 64)
                ))),
            };
        }
    }
    Ok(None)
}

/// The socket peer a request came from (axum puts it in the request's extensions).
fn peer(parts: &Parts) -> SocketAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// Someone who may read character data: a viewer (or more), or anyone when reads are open
/// (a loopback tracker with no account, or PUBLIC_READ).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let who = principal(state, peer(parts), &parts.headers).await?;
        if who.is_some() || state.directory.open_reads() {
            return Ok(Self);
        }
        Err(ApiError::Unauthorized(
            "sign in (or send an API token as `Authorization: Bearer ...`) to read this tracker",
        ))
    }
}

/// An admin: manages accounts, tokens and keys, and reads the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct Admin(pub(crate) Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match principal(state, peer(parts), &parts.headers).await? {
            Some(p) if p.can(Role::Admin) => Ok(Self(p)),
            Some(_) => Err(ApiError::Forbidden("this needs an admin".into())),
            None => Err(ApiError::Unauthorized("sign in as an admin")),
        }
    }
}

/// Someone identified (an account or an API token, any role): what belongs to a person, such
/// as saved groups, needs to know whose it is.
#[derive(Debug, Clone)]
pub(crate) struct Someone(pub(crate) Principal);

impl FromRequestParts<AppState> for Someone {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match principal(state, peer(parts), &parts.headers).await? {
            Some(p) => Ok(Self(p)),
            None => Err(ApiError::Unauthorized(
                "sign in (or send an API token) to keep groups and read command history",
            )),
        }
    }
}

/// May scrape `/metrics`: anyone on a loopback tracker; beyond loopback the METRICS_TOKEN or
/// any API token or signed-in browser (metrics carry no character data, but they tell how busy
/// the tracker is and what fails).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scraper;

impl FromRequestParts<AppState> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.directory.loopback() {
            return Ok(Self);
        }
        if let (Some(expected), Some(presented)) =
            (&state.settings.access.metrics_token, bearer(&parts.headers))
            && expected.matches(presented)
        {
            return Ok(Self);
        }
        match principal(state, peer(parts), &parts.headers).await? {
            Some(_) => Ok(Self),
            None => Err(ApiError::Unauthorized(
                "/metrics needs `Authorization: Bearer` with METRICS_TOKEN or an API token",
            )),
        }
    }
}

/// Anyone, signed in or not (for `/me`).
#[derive(Debug, Clone)]
pub(crate) struct Anyone(pub(crate) Option<Principal>);

impl FromRequestParts<AppState> for Anyone {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(principal(state, peer(parts), &parts.headers).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_bearer_tokens_are_read_from_their_headers() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            "a=1; dereth_session=abc ; b=2".parse().expect("header"),
        );
        h.append("authorization", "Bearer  dt_xyz ".parse().expect("header"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(bearer(&h), Some("dt_xyz"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic Zm9v".parse().expect("header"));
        assert_eq!(bearer(&basic), None);
    }
}
