//! CSV answers, streamed page by page so an export never sits in memory whole.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};

use crate::store::StoreError;

/// Rows per page fetched from the database while streaming.
pub(super) const PAGE: i64 = 2_000;

/// A row that can be written as one CSV line.
pub(crate) trait CsvRow {
    /// The header line, without the newline.
    const HEADER: &'static str;
    /// Appends the row's fields, comma separated, without the newline.
    fn write(&self, out: &mut String);
}

/// Appends one field, quoted when it contains a separator, a quote or a line break.
///
/// Text that a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return: names and chat come from plugins) is prefixed with `'` so it stays text.
pub(super) fn field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quote {
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Appends an optional value (empty when absent).
pub(super) fn opt<T: std::fmt::Display>(out: &mut String, value: Option<T>) {
    if let Some(v) = value {
        out.push_str(&v.to_string());
    }
}

fn render<T: CsvRow>(rows: &[T], with_header: bool) -> Bytes {
    let mut out = String::with_capacity(rows.len() * 96 + 128);
    if with_header {
        out.push_str(T::HEADER);
        out.push('\n');
    }
    for row in rows {
        row.write(&mut out);
        out.push('\n');
    }
    Bytes::from(out)
}

/// What bounds one CSV export: its turn among expensive queries (held until the body ends), the
/// most rows it carries and when it must be done.
#[derive(Debug)]
pub(super) struct Export {
    pub permit: crate::limits::HeavyPermit,
    pub max_rows: i64,
    pub deadline: tokio::time::Instant,
}

impl Export {
    /// Takes a turn among expensive queries and starts the export's clock.
    pub(super) async fn start(
        state: &crate::state::AppState,
    ) -> Result<Self, crate::web::error::ApiError> {
        let permit = state.queries.admit().await?;
        let settings = &state.settings;
        Ok(Self {
            permit,
            max_rows: i64::try_from(settings.queries.csv_max_rows).unwrap_or(i64::MAX),
            deadline: tokio::time::Instant::now()
                + std::time::Duration::from_secs(settings.queries.csv_time_budget_secs),
        })
    }
}

/// Streams pages from `fetch` (called with the previous page's last row, `None` first, and the
/// most rows to return) until a page comes back short or `cap` rows (at most the export's
/// maximum) were sent. A database error, or the export's deadline passing, ends the body early
/// with an error (logged; the status line is already sent, so the client sees a truncated
/// transfer rather than a complete-looking file).
pub(super) fn paged<T, F, Fut>(
    filename: &str,
    cap: Option<i64>,
    export: Export,
    fetch: F,
) -> Response
where
    T: CsvRow + Clone + Send + 'static,
    F: Fn(Option<T>, i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<T>, StoreError>> + Send + 'static,
{
    struct State<F, T> {
        fetch: F,
        last: Option<T>,
        first: bool,
        done: bool,
        left: i64,
        deadline: tokio::time::Instant,
        _permit: crate::limits::HeavyPermit,
    }
    let state = State {
        fetch,
        last: None,
        first: true,
        done: false,
        left: cap.unwrap_or(i64::MAX).min(export.max_rows),
        deadline: export.deadline,
        _permit: export.permit,
    };
    let body = stream::unfold(state, |mut s| async move {
        if s.done || s.left <= 0 {
            return None;
        }
        let limit = s.left.min(PAGE);
        let page = tokio::time::timeout_at(s.deadline, (s.fetch)(s.last.take(), limit)).await;
        let Ok(page) = page else {
            tracing::warn!("CSV export ran past CSV_TIME_BUDGET_SECS; cut off");
            s.done = true;
            return Some((Err(std::io::Error::other("export time budget exceeded")), s));
        };
        match page {
            Ok(rows) => {
                s.done = (rows.len() as i64) < limit;
                s.left -= rows.len() as i64;
                let chunk = render(&rows, s.first);
                s.first = false;
                s.last = rows.last().cloned();
                Some((Ok::<_, std::io::Error>(chunk), s))
            }
            Err(err) => {
                tracing::error!(error = %err, "CSV export failed part-way");
                s.done = true;
                Some((Err(std::io::Error::other("database error")), s))
            }
        }
    });
    // Fused: body layers (compression) may poll again after the end.
    csv_response(filename, Body::from_stream(body.fuse()))
}

/// A CSV answer for rows already fetched (bounded by the endpoint's own cap).
pub(super) fn whole<T: CsvRow>(filename: &str, rows: &[T]) -> Response {
    csv_response(filename, Body::from(render(rows, true)))
}

fn csv_response(filename: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        let mut out = String::new();
        field(&mut out, "plain");
        out.push(',');
        field(&mut out, "a,b \"c\"");
        assert_eq!(out, "plain,\"a,b \"\"c\"\"\"");
    }
}
