//! The compact live encoding, for maps that ask for it (`/ws/live?encoding=compact`; the plugin
//! contract is untouched). A character's telemetry, in an update and in a snapshot, is a JSON
//! array of values in the order of [`COLUMNS`] instead of an object repeating every key: the
//! connection's first message, an `encoding` frame, names the columns, so a map reads them by
//! name and the tracker may add columns at the end. Times are milliseconds since the epoch,
//! positions are rounded to 1e-4 (about 2 cm of the world), rates and process figures to 0.1, and
//! trailing empty values are left out. Everything else (chat, spawns, rares, vitals frames...)
//! is sent as in the JSON encoding. The map uses the compact form.
//!
//! It is stateless: every array stands on its own, so a map that misses batches, resyncs,
//! watches an area or reads from another instance of a cluster needs nothing to decode the next
//! one.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::protocol::LivePlayer;

/// How a browser wants live characters encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Objects, as EVENT_FORMATS.json describes the `telemetry` frame to browsers.
    #[default]
    Json,
    /// Arrays of [`COLUMNS`].
    Compact,
}

impl Encoding {
    /// The encoding named by `/ws/live`'s `encoding` parameter.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "compact" => Some(Self::Compact),
            _ => None,
        }
    }
}

/// The columns of a compact character, in order.
pub(crate) const COLUMNS: [&str; 25] = [
    "timestamp",
    "character_name",
    "ew",
    "ns",
    "z",
    "kills",
    "kills_per_hour",
    "deaths",
    "rares_found",
    "vt_state",
    "onlinetime",
    "total_kills",
    "total_rares",
    "session_rares",
    "last_seen",
    "session_id",
    "char_tag",
    "total_deaths",
    "prismatic_taper_count",
    "mem_mb",
    "cpu_pct",
    "mem_handles",
    "latency_ms",
    "vitals",
    "character_stats",
];

/// The `encoding` frame a compact browser gets first.
pub(crate) fn announcement() -> String {
    serde_json::json!({
        "type": "encoding",
        "name": "compact",
        "columns": COLUMNS,
    })
    .to_string()
}

/// One character as a compact array.
pub(crate) fn row(p: &LivePlayer<'_>) -> String {
    let t = p.telemetry;
    let mut out = Row::default();
    out.time(t.timestamp);
    out.value(&t.character_name);
    out.value(&round(t.ew, 1e4));
    out.value(&round(t.ns, 1e4));
    out.value(&round(t.z, 1e4));
    out.value(&t.kills);
    out.value(&t.kills_per_hour.map(|v| round(v, 10.0)));
    out.value(&t.deaths);
    out.value(&t.rares_found);
    out.value(&t.vt_state);
    out.value(&t.onlinetime);
    out.value(&p.totals.total_kills);
    out.value(&p.totals.total_rares);
    out.value(&p.totals.session_rares);
    out.time(p.last_seen);
    out.value(&t.session_id);
    out.value(&t.char_tag);
    out.value(&t.total_deaths);
    out.value(&t.prismatic_taper_count);
    out.value(&t.mem_mb.map(|v| round(v, 10.0)));
    out.value(&t.cpu_pct.map(|v| round(v, 10.0)));
    out.value(&t.mem_handles);
    out.value(&t.latency_ms.map(|v| round(v, 10.0)));
    out.value(&p.vitals);
    out.value(&p.character_stats);
    out.finish()
}

/// `v` rounded to `1 / scale` (a value that cannot be rounded stays as it is).
fn round(v: f64, scale: f64) -> f64 {
    let r = (v * scale).round() / scale;
    if r.is_finite() { r } else { v }
}

/// An array being written; empty values are held back until a later value needs them, so the
/// trailing ones are never written.
#[derive(Default)]
struct Row {
    buf: Vec<u8>,
    /// Empty values not written yet.
    nulls: usize,
}

impl Row {
    fn value<T: Serialize>(&mut self, v: &T) {
        let mark = self.buf.len();
        // Writing into a Vec cannot fail; a value that cannot be serialized is written empty.
        if serde_json::to_writer(&mut self.buf, v).is_err() {
            self.buf.truncate(mark);
            self.nulls += 1;
            return;
        }
        if self.buf[mark..] == *b"null" {
            self.buf.truncate(mark);
            self.nulls += 1;
            return;
        }
        let value = self.buf.split_off(mark);
        for _ in 0..self.nulls {
            self.separate();
            self.buf.extend_from_slice(b"null");
        }
        self.nulls = 0;
        self.separate();
        self.buf.extend_from_slice(&value);
    }

    fn time(&mut self, at: DateTime<Utc>) {
        self.value(&at.timestamp_millis());
    }

    fn separate(&mut self) {
        self.buf.push(if self.buf.is_empty() { b'[' } else { b',' });
    }

    fn finish(mut self) -> String {
        if self.buf.is_empty() {
            self.buf.push(b'[');
        }
        let _ = self.buf.write_all(b"]");
        // Only serde_json's output and ASCII punctuation went in.
        String::from_utf8(self.buf).unwrap_or_else(|_| "[]".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BrowserOut, Telemetry, Totals, Vitals, to_json};

    fn telemetry() -> Telemetry {
        serde_json::from_value(serde_json::json!({
            "character_name": "Ada \"the\" Quick",
            "session_id": "s-1",
            "timestamp": "2026-12-06T10:00:00.123456Z",
            "ew": 12.345_678_9, "ns": -45.5, "z": 0.000_01,
            "kills": 7, "deaths": 1, "rares_found": 0,
            "kills_per_hour": 123.456, "vt_state": "Combat",
            "received_at": "2026-12-06T10:00:00.2Z", "clock_offset_ms": -77,
        }))
        .expect("telemetry")
    }

    fn player<'a>(t: &'a Telemetry, vitals: Option<&'a Vitals>) -> LivePlayer<'a> {
        LivePlayer {
            telemetry: t,
            totals: Totals {
                total_kills: 70,
                total_rares: 2,
                session_rares: 0,
            },
            last_seen: t.timestamp,
            vitals,
            character_stats: None,
        }
    }

    /// What a map makes of a compact row: an object of the columns present.
    fn expand(row: &str) -> serde_json::Map<String, serde_json::Value> {
        let values: Vec<serde_json::Value> = serde_json::from_str(row).expect("an array");
        assert!(values.len() <= COLUMNS.len());
        COLUMNS
            .iter()
            .zip(values)
            .map(|(k, v)| ((*k).to_owned(), v))
            .collect()
    }

    #[test]
    fn a_compact_row_carries_what_the_json_object_does_in_fewer_bytes() {
        let t = telemetry();
        let p = player(&t, None);
        let compact = row(&p);
        let json = to_json(&BrowserOut::Telemetry(p.clone()));
        let object: serde_json::Value = serde_json::from_str(&json).expect("json");
        let got = expand(&compact);
        for (key, value) in &got {
            let want = &object[key.as_str()];
            match key.as_str() {
                "timestamp" | "last_seen" => {
                    let at = chrono::DateTime::parse_from_rfc3339(want.as_str().expect("time"))
                        .expect("rfc3339");
                    assert_eq!(value.as_i64(), Some(at.timestamp_millis()), "{key}");
                }
                "ew" => assert_eq!(value.as_f64(), Some(12.3457)),
                "z" => assert_eq!(value.as_f64(), Some(0.0)),
                "kills_per_hour" => assert_eq!(value.as_f64(), Some(123.5)),
                _ => assert_eq!(value, want, "{key}"),
            }
        }
        // Every column up to the last non-empty one is there; the empty tail is left out.
        assert_eq!(
            got.len(),
            COLUMNS
                .iter()
                .position(|c| *c == "session_id")
                .expect("column")
                + 1
        );
        assert!(!compact.contains("received_at") && !compact.contains("character_name"));
        assert!(
            compact.len() * 2 < json.len(),
            "{} vs {}",
            compact.len(),
            json.len()
        );
    }

    #[test]
    fn empty_values_before_a_present_one_are_written_and_objects_nest() {
        let t = telemetry();
        let vitals: Vitals = serde_json::from_value(serde_json::json!({
            "character_name": "Ada \"the\" Quick",
            "timestamp": "2026-12-06T10:00:00Z",
            "health_percentage": 55.5,
        }))
        .expect("vitals");
        let got = expand(&row(&player(&t, Some(&vitals))));
        assert_eq!(got.len(), COLUMNS.len() - 1);
        assert_eq!(got["char_tag"], serde_json::Value::Null);
        assert_eq!(got["mem_mb"], serde_json::Value::Null);
        assert_eq!(got["vitals"]["health_percentage"], 55.5);
    }

    #[test]
    fn the_announcement_names_every_column_in_order() {
        let frame: serde_json::Value = serde_json::from_str(&announcement()).expect("json");
        assert_eq!(frame["type"], "encoding");
        assert_eq!(frame["name"], "compact");
        assert_eq!(frame["columns"], serde_json::json!(COLUMNS));
        assert_eq!(Encoding::from_name("compact"), Some(Encoding::Compact));
        assert_eq!(Encoding::from_name("msgpack"), None);
    }
}
