-- How far each tracker's spool (the local file of accepted events, one per instance) is stored:
-- every event of spool `spool_id` up to and including sequence number `upto` is in the database.
-- Updated in the same transaction as the rows, so a restarted tracker replays exactly the rest.
CREATE TABLE spool_marks (
    spool_id TEXT PRIMARY KEY,
    upto     BIGINT NOT NULL
);

-- A row the tracker writes at start and while idle, to learn whether writes succeed
-- (`/health` turns 503 when they do not).
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY,
    at BIGINT NOT NULL
);
