-- When the tracker read each event (its own clock) beside the plugin's `timestamp`, and how
-- far the plugin's clock was off then (plugin minus tracker, milliseconds). `timestamp` is
-- where the event is placed: the plugin's time when its clock is within CLOCK_SKEW_SECS, else
-- `received_at`. Rows written before this migration have neither (telemetry_events had
-- `received_at` from the start, filled by the database when the row was inserted; it now holds
-- the moment the tracker read the frame).
ALTER TABLE telemetry_events ADD COLUMN clock_offset_ms BIGINT;
ALTER TABLE spawn_events ADD COLUMN received_at TEXT;
ALTER TABLE spawn_events ADD COLUMN clock_offset_ms BIGINT;
ALTER TABLE rare_events ADD COLUMN received_at TEXT;
ALTER TABLE rare_events ADD COLUMN clock_offset_ms BIGINT;
ALTER TABLE portal_events ADD COLUMN received_at TEXT;
ALTER TABLE portal_events ADD COLUMN clock_offset_ms BIGINT;
