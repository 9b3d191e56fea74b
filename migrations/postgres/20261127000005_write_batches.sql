-- The key of every batch the writer committed. A batch is retried when its COMMIT's reply is
-- lost (the connection dropped after the database committed); its key is found here and the
-- retry adds nothing: no row twice, no kill or rare counted twice. Old keys are pruned.
CREATE TABLE write_batches (
    batch_key  TEXT        PRIMARY KEY,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX write_batches_written_at ON write_batches (written_at);
