//! Request extractors whose rejections are answered like every other error: the JSON body of
//! [`ApiError`], never axum's plain-text rejection.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::web::error::ApiError;

/// Wraps an axum extractor of the same name so that its rejection becomes a 400 with the JSON
/// error body, prefixed by what could not be read.
macro_rules! json_rejection {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub(crate) struct $name<T>(pub T);

        impl<T, S> FromRequestParts<S> for $name<T>
        where
            T: serde::de::DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                match axum::extract::$name::<T>::from_request_parts(parts, state).await {
                    Ok(axum::extract::$name(value)) => Ok(Self(value)),
                    Err(rejection) => Err(ApiError::BadRequest(format!(
                        "{}: {}",
                        $what,
                        rejection.body_text()
                    ))),
                }
            }
        }
    };
}

json_rejection!(
    /// `axum::extract::Query`, but a query string that does not parse (a repeated or malformed
    /// parameter) is answered with the JSON error body like every other rejection.
    Query,
    "invalid query string"
);

json_rejection!(
    /// `axum::extract::Path`, but a path segment that does not decode (invalid UTF-8, say) is
    /// answered with the JSON error body.
    Path,
    "invalid path"
);

/// A JSON request body as handlers take it (`Result<Json<T>, JsonRejection>`, so they check who
/// sends it and from which page first): its value, or a 400 with the JSON error body saying what
/// is wrong with it.
pub(crate) fn json_body<T>(
    body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|axum::Json(value)| value)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}
