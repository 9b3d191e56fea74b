//! Cursor-paged reads (`/history`, `/spawns`, `/rares`, `/portals`): one JSON page with the cursor
//! of the next, or every page streamed as one CSV export.

use std::future::Future;

use axum::Json;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::ApiError;
use super::csv::{self, CsvRow};
use super::params::{self, Format};
use crate::state::AppState;
use crate::store::{EventRecord, StoreError, TelemetryRecord};

/// Rows per JSON page unless `limit` says otherwise, and the most it may say.
pub(crate) const PAGE_DEFAULT_LIMIT: i64 = 1_000;
pub(crate) const PAGE_MAX_LIMIT: i64 = 10_000;

/// The paging parameters every paged endpoint takes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Rows per page: 1 to 10000, default 1000 (JSON). With CSV, the most rows exported
    /// (default and most: the server's CSV_MAX_ROWS, 1000000 unless configured).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `json` (default) or `csv` (streamed).
    #[param(value_type = Option<Format>)]
    format: Option<String>,
}

/// Where a row stands in the (timestamp, id) order pages follow.
pub(crate) trait Keyed {
    fn key(&self) -> (DateTime<Utc>, i64);
}

impl Keyed for TelemetryRecord {
    fn key(&self) -> (DateTime<Utc>, i64) {
        (self.telemetry.timestamp, self.id)
    }
}

impl Keyed for EventRecord {
    fn key(&self) -> (DateTime<Utc>, i64) {
        (self.timestamp, self.id)
    }
}

/// Answers a paged read. `fetch(after, limit)` returns at most `limit` rows after the key
/// `after` (from the start when `None`); `page(rows, next_cursor)` wraps a JSON page. With
/// `format=csv`, pages are fetched and streamed as `filename` until the rows run out or the
/// export's caps are reached.
pub(crate) async fn answer<T, F, Fut, P>(
    state: &AppState,
    paging: &PageParams,
    filename: &'static str,
    fetch: F,
    page: impl FnOnce(Vec<T>, Option<String>) -> P,
) -> Result<Response, ApiError>
where
    T: CsvRow + Keyed + Clone + Send + 'static,
    F: Fn(Option<(DateTime<Utc>, i64)>, i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<T>, StoreError>> + Send + 'static,
    P: Serialize,
{
    let format = params::format(paging.format.as_deref())?;
    let after = params::cursor(paging.cursor.as_deref())?;
    match format {
        Format::Json => {
            let limit = params::number::<i64>("limit", paging.limit.as_deref(), 1, PAGE_MAX_LIMIT)?
                .unwrap_or(PAGE_DEFAULT_LIMIT);
            // One row more than asked tells whether another page follows.
            let mut rows = fetch(after, limit + 1).await?;
            let more = rows.len() as i64 > limit;
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            let next_cursor = more.then(|| rows.last()).flatten().map(|row| {
                let (timestamp, id) = row.key();
                params::encode_cursor(timestamp, id)
            });
            Ok(Json(page(rows, next_cursor)).into_response())
        }
        Format::Csv => {
            let cap = params::number::<i64>("limit", paging.limit.as_deref(), 1, i64::MAX)?;
            let export = csv::Export::start(state).await?;
            Ok(csv::paged(
                filename,
                cap,
                export,
                move |last: Option<T>, limit| fetch(last.map(|row| row.key()).or(after), limit),
            ))
        }
    }
}
