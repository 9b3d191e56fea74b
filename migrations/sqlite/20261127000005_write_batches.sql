-- The key of every batch the writer committed; a retried batch whose key is here adds nothing
-- (see migrations/postgres). Old keys are pruned.
CREATE TABLE write_batches (
    batch_key  TEXT PRIMARY KEY,
    written_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX write_batches_written_at ON write_batches (written_at);
