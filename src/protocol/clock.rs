//! Plugin clocks. A frame's timestamp is the plugin's clock; the tracker measures how far that
//! clock is from its own when it reads the frame, and places the frames of a plugin whose clock
//! is off by more than a tolerance (ahead, behind, or a zoneless local time read as UTC) at the
//! moment it read them. Every stored event keeps both: `received_at` and `clock_offset_ms`.

use chrono::{DateTime, Duration, Utc};

use crate::protocol::PluginFrame;

/// How the frames read at one moment are placed in time.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// When the tracker read the frame.
    pub read_at: DateTime<Utc>,
    /// Largest offset still trusted; `None` trusts plugin clocks whatever they say.
    pub tolerance: Option<Duration>,
    /// No frame is placed before this (when the connection's previous frames were placed on
    /// the tracker's clock): a clock corrected to within the tolerance carries on from there
    /// instead of going back a little.
    pub not_before: Option<DateTime<Utc>>,
}

/// What one frame said about its plugin's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    /// The frame's timestamp minus the moment it was read, in milliseconds.
    pub offset_ms: i64,
    /// The frame was placed at the moment it was read (its clock was off by too much).
    pub placed: bool,
}

impl PluginFrame {
    fn timestamp_mut(&mut self) -> Option<&mut DateTime<Utc>> {
        Some(match self {
            Self::Telemetry(t) => &mut t.timestamp,
            Self::Spawn(s) => &mut s.timestamp,
            Self::Rare(r) => &mut r.timestamp,
            Self::Chat(c) => &mut c.timestamp,
            Self::Vitals(v) => &mut v.timestamp,
            Self::CharacterStats(s) => &mut s.timestamp,
            Self::Portal(p) => &mut p.timestamp,
            Self::Register(_) | Self::Relayed { .. } | Self::Unhandled { .. } => return None,
        })
    }

    /// The stored frames' `received_at` and `clock_offset_ms`.
    fn stamp_mut(&mut self) -> Option<(&mut Option<DateTime<Utc>>, &mut Option<i64>)> {
        Some(match self {
            Self::Telemetry(t) => (&mut t.received_at, &mut t.clock_offset_ms),
            Self::Spawn(s) => (&mut s.received_at, &mut s.clock_offset_ms),
            Self::Rare(r) => (&mut r.received_at, &mut r.clock_offset_ms),
            Self::Portal(p) => (&mut p.received_at, &mut p.clock_offset_ms),
            _ => return None,
        })
    }

    /// Measures this frame's clock against `placement.read_at`, records both on the frame
    /// (replacing whatever the plugin sent in those fields) and, when the clock is off by more
    /// than the tolerance, moves the frame to the moment it was read.
    pub fn place(&mut self, placement: &Placement) -> Option<ClockReading> {
        let read_at = placement.read_at;
        let timestamp = self.timestamp_mut()?;
        let offset = *timestamp - read_at;
        let placed = placement.tolerance.is_some_and(|t| offset.abs() > t);
        if placed {
            *timestamp = read_at;
        } else if let Some(floor) = placement.not_before
            && *timestamp < floor
        {
            *timestamp = floor;
        }
        let offset_ms = offset.num_milliseconds();
        if let Some((received_at, clock_offset_ms)) = self.stamp_mut() {
            *received_at = Some(read_at);
            *clock_offset_ms = Some(offset_ms);
        }
        Some(ClockReading { offset_ms, placed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_plugin_frame_at;

    fn telemetry_at(timestamp: &str) -> String {
        format!(
            r#"{{"type":"telemetry","character_name":"Ann","session_id":"s","timestamp":"{timestamp}",
                "ew":1,"ns":2,"z":0,"kills":0,"deaths":0,"rares_found":0,
                "received_at":"1999-01-01T00:00:00Z","clock_offset_ms":"forged"}}"#
        )
    }

    fn read_at(text: &str, at: DateTime<Utc>) -> (DateTime<Utc>, ClockReading, PluginFrame) {
        let placement = Placement {
            read_at: at,
            tolerance: Some(Duration::seconds(5)),
            not_before: None,
        };
        let (frame, reading) = parse_plugin_frame_at(text, &placement).expect("frame");
        let PluginFrame::Telemetry(t) = &frame else {
            panic!("telemetry")
        };
        (t.timestamp, reading.expect("a reading"), frame.clone())
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_clock_within_the_tolerance_is_trusted() {
        let (placed, reading, frame) = read_at(&telemetry_at("2026-12-06T11:59:58.5Z"), now());
        assert_eq!(placed.to_rfc3339(), "2026-12-06T11:59:58.500+00:00");
        assert_eq!(
            reading,
            ClockReading {
                offset_ms: -1_500,
                placed: false
            }
        );
        let PluginFrame::Telemetry(t) = frame else {
            panic!()
        };
        assert_eq!(
            t.received_at,
            Some(now()),
            "the plugin's received_at is replaced"
        );
        assert_eq!(t.clock_offset_ms, Some(-1_500));
    }

    #[test]
    fn clocks_off_either_way_or_without_a_zone_are_placed_when_read() {
        for (sent, offset_ms) in [
            ("2026-12-06T14:00:00Z", 7_200_000),    // 2 h ahead
            ("2026-12-03T12:00:00Z", -259_200_000), // 3 days behind
            ("2026-12-06T07:00:00", -18_000_000),   // local time of a UTC-5 machine
            ("2026-12-07T13:00:00Z", 90_000_000),   // 25 h ahead: placed, not refused
        ] {
            let (placed, reading, _) = read_at(&telemetry_at(sent), now());
            assert_eq!(placed, now(), "{sent}");
            assert_eq!(
                reading,
                ClockReading {
                    offset_ms,
                    placed: true
                },
                "{sent}"
            );
        }
    }

    #[test]
    fn a_corrected_clock_carries_on_after_the_placed_frames() {
        let placement = Placement {
            read_at: now(),
            tolerance: Some(Duration::seconds(5)),
            not_before: Some(now() + Duration::milliseconds(1)),
        };
        let (frame, reading) =
            parse_plugin_frame_at(&telemetry_at("2026-12-06T11:59:59Z"), &placement)
                .expect("frame");
        let PluginFrame::Telemetry(t) = frame else {
            panic!()
        };
        assert_eq!(t.timestamp, now() + Duration::milliseconds(1));
        assert_eq!(
            reading.map(|r| (r.offset_ms, r.placed)),
            Some((-1_000, false))
        );
    }

    #[test]
    fn without_a_tolerance_plugin_clocks_are_kept_but_still_measured() {
        let placement = Placement {
            read_at: now(),
            tolerance: None,
            not_before: None,
        };
        let (frame, reading) =
            parse_plugin_frame_at(&telemetry_at("2026-12-06T10:00:00Z"), &placement)
                .expect("frame");
        let PluginFrame::Telemetry(t) = frame else {
            panic!()
        };
        assert_eq!(t.timestamp.to_rfc3339(), "2026-12-06T10:00:00+00:00");
        assert_eq!(reading.map(|r| r.offset_ms), Some(-7_200_000));
    }
}
