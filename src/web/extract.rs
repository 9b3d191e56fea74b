//! Request extractors whose rejections are answered like every other error: the JSON body of
//! [`ApiError`], never axum's plain-text rejection.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::web::error::ApiError;

/// `axum::extract::Query`, but a query string that does not parse (a repeated or malformed
/// parameter) is answered with the JSON error body like every other rejection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "invalid query string: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// `axum::extract::Path`, but a path segment that does not decode (invalid UTF-8, say) is
/// answered with the JSON error body.
#[derive(Debug, Clone)]
pub(crate) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "invalid path: {}",
                rejection.body_text()
            ))),
        }
    }
}
