-- Character sheets (`character_stats`: latest per character and history) and teleports
-- (`portal`), the same logical tables as migrations/postgres.

CREATE TABLE character_sheets (
    id               INTEGER PRIMARY KEY,
    character_name   TEXT    NOT NULL,
    timestamp        TEXT    NOT NULL,
    level            INTEGER,
    total_xp         INTEGER,
    unassigned_xp    INTEGER,
    luminance_earned INTEGER,
    luminance_total  INTEGER,
    title            TEXT,
    allegiance_name  TEXT,
    -- The whole sheet as parsed (attributes and skills included), as JSON text.
    data             TEXT    NOT NULL
);
CREATE INDEX character_sheets_character_time ON character_sheets (character_name, timestamp DESC);
CREATE INDEX character_sheets_time ON character_sheets (timestamp DESC);

CREATE TABLE portal_events (
    id             INTEGER PRIMARY KEY,
    character_name TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    session_id     TEXT,
    timestamp      TEXT NOT NULL,
    ew             REAL NOT NULL,
    ns             REAL NOT NULL,
    z              REAL NOT NULL
);
CREATE INDEX portal_events_character_time ON portal_events (character_name, timestamp DESC);
CREATE INDEX portal_events_time ON portal_events (timestamp DESC);
