-- Core schema, the same logical tables as migrations/postgres. Timestamps are TEXT in one fixed
-- format (RFC 3339, UTC, microseconds, 'Z'), so text order is time order and indexes serve ranges.

CREATE TABLE telemetry_events (
    id                    INTEGER PRIMARY KEY,
    character_name        TEXT    NOT NULL,
    char_tag              TEXT,
    session_id            TEXT    NOT NULL,
    timestamp             TEXT    NOT NULL,
    ew                    REAL    NOT NULL,
    ns                    REAL    NOT NULL,
    z                     REAL    NOT NULL,
    kills                 INTEGER NOT NULL,
    kills_delta           INTEGER NOT NULL DEFAULT 0,
    kills_per_hour        REAL,
    onlinetime            TEXT,
    deaths                INTEGER NOT NULL,
    total_deaths          INTEGER,
    rares_found           INTEGER NOT NULL,
    prismatic_taper_count INTEGER,
    vt_state              TEXT,
    mem_mb                REAL,
    cpu_pct               REAL,
    mem_handles           INTEGER,
    latency_ms            REAL,
    received_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX telemetry_events_character_time ON telemetry_events (character_name, timestamp DESC);
CREATE INDEX telemetry_events_time ON telemetry_events (timestamp DESC);

CREATE TABLE spawn_events (
    id             INTEGER PRIMARY KEY,
    character_name TEXT NOT NULL,
    mob            TEXT NOT NULL,
    timestamp      TEXT NOT NULL,
    ew             REAL NOT NULL,
    ns             REAL NOT NULL,
    z              REAL NOT NULL
);
CREATE INDEX spawn_events_character_time ON spawn_events (character_name, timestamp DESC);
CREATE INDEX spawn_events_time ON spawn_events (timestamp DESC);
CREATE INDEX spawn_events_mob_time ON spawn_events (mob, timestamp DESC);

CREATE TABLE rare_events (
    id             INTEGER PRIMARY KEY,
    character_name TEXT NOT NULL,
    name           TEXT NOT NULL,
    session_id     TEXT,
    timestamp      TEXT NOT NULL,
    ew             REAL NOT NULL,
    ns             REAL NOT NULL,
    z              REAL NOT NULL
);
CREATE INDEX rare_events_character_time ON rare_events (character_name, timestamp DESC);
CREATE INDEX rare_events_time ON rare_events (timestamp DESC);
CREATE INDEX rare_events_name_time ON rare_events (name, timestamp DESC);

CREATE TABLE spawn_cells (
    hour  TEXT    NOT NULL,
    cx    INTEGER NOT NULL,
    cy    INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, cx, cy)
);

CREATE TABLE characters (
    character_name TEXT PRIMARY KEY,
    char_tag       TEXT,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    deaths         INTEGER,
    total_deaths   INTEGER
);

CREATE TABLE char_stats (
    character_name TEXT PRIMARY KEY,
    total_kills    INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL
);

CREATE TABLE rare_stats (
    character_name TEXT PRIMARY KEY,
    total_rares    INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL
);

CREATE TABLE rare_stats_sessions (
    character_name TEXT    NOT NULL,
    session_id     TEXT    NOT NULL,
    session_rares  INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (character_name, session_id)
);

CREATE TABLE session_kills (
    character_name TEXT    NOT NULL,
    session_id     TEXT    NOT NULL,
    last_kills     INTEGER NOT NULL,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (character_name, session_id)
);
CREATE INDEX session_kills_updated ON session_kills (updated_at);
