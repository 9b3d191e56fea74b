//! The one error type HTTP handlers return, rendered as `{"error": "..."}` with a stable status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to an HTTP client. Internal causes are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// The request conflicts with what exists (a name taken, the last admin).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(&'static str),
    #[error("{0}")]
    Unavailable(&'static str),
    /// Too much work in progress; the client may retry after a second.
    #[error("{0}")]
    Busy(&'static str),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}

impl ApiError {
    /// The status code this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        if err.is_query_timeout() {
            return Self::Unavailable(
                "the query ran longer than the server allows (READ_STATEMENT_TIMEOUT_SECS); \
                 ask for a shorter range or one character",
            );
        }
        if matches!(
            err,
            crate::store::StoreError::Database(sqlx::Error::PoolTimedOut)
        ) {
            return Self::Busy("every database connection for queries is busy; retry in a moment");
        }
        Self::Internal(Box::new(err))
    }
}

impl From<crate::limits::Refused> for ApiError {
    fn from(refused: crate::limits::Refused) -> Self {
        match refused {
            crate::limits::Refused::TooLarge(why) => Self::BadRequest(why),
            crate::limits::Refused::Busy(why) => Self::Busy(why),
        }
    }
}

/// The refusals every query endpoint documents: a bad parameter, or a query the tracker will not
/// run now (too busy, or too slow for its budget).
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "an OpenAPI description: read by the derive, never built"
)]
pub(crate) enum QueryRefusals {
    /// A parameter is invalid
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Not signed in (and reads are not open), or a wrong API token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// An authenticating proxy named a user who has no account here
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Too many failed authentications from this client
    #[response(status = 429)]
    TooMany(ErrorBody),
    /// Too busy or too slow: retry later (`Retry-After`) or narrow the query
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The refusals of an endpoint that needs someone signed in.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "an OpenAPI description: read by the derive, never built"
)]
pub(crate) enum AuthRefusals {
    /// Not signed in, or a wrong API token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Signed in without the role this needs, or a cross-site request
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Too many failed authentications from this client or for this account
    #[response(status = 429)]
    TooMany(ErrorBody),
}

/// The refusal of an endpoint about one character that was never seen.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Unknown character")]
#[expect(
    dead_code,
    reason = "an OpenAPI description: read by the derive, never built"
)]
pub(crate) struct UnknownCharacter(pub ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Bearer realm="dereth-tracker""#),
            );
        }
        if matches!(self, Self::Busy(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
