-- What happened to characters, for the event log: deaths, plugin disconnects and connections,
-- level changes (rares and portals are read from their own tables). Written by the tracker as it
-- reads the frames that show them; pruned with raw telemetry.
CREATE TABLE character_events (
    id             INTEGER PRIMARY KEY,
    character_name TEXT NOT NULL,
    kind           TEXT NOT NULL,
    timestamp      TEXT NOT NULL,
    detail         TEXT
);
CREATE INDEX character_events_character_time ON character_events (character_name, timestamp DESC);
CREATE INDEX character_events_time ON character_events (timestamp DESC);
