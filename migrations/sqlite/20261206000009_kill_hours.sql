-- Kills and kills-per-hour samples per character and hour, kept by the writer in the same
-- transaction as the telemetry they come from: leaderboards read one row per character and hour
-- instead of every telemetry row (a day of 1,000 characters is 24,000 rows, not 43 million).
-- Filled from the telemetry already stored.
CREATE TABLE kill_hours (
    character_name TEXT    NOT NULL,
    hour           TEXT    NOT NULL,
    kills          INTEGER NOT NULL,
    kph_sum        REAL    NOT NULL,
    kph_samples    INTEGER NOT NULL,
    PRIMARY KEY (character_name, hour)
);
CREATE INDEX kill_hours_hour ON kill_hours (hour);
INSERT INTO kill_hours (character_name, hour, kills, kph_sum, kph_samples)
SELECT character_name, strftime('%Y-%m-%dT%H:00:00.000000Z', timestamp), sum(kills_delta),
       coalesce(sum(kills_per_hour), 0), count(kills_per_hour)
FROM telemetry_events
GROUP BY 1, 2;
