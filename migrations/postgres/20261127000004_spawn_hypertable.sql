-- On TimescaleDB, spawn_events (the largest table in production) becomes a hypertable too, so its
-- retention drops whole chunks instead of deleting rows. Chunk intervals of both hypertables are
-- set at startup from TELEMETRY_CHUNK_HOURS / SPAWN_CHUNK_HOURS. Plain PostgreSQL: nothing to do.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('spawn_events', 'timestamp', chunk_time_interval => INTERVAL '1 day',
                                  if_not_exists => TRUE, migrate_data => TRUE);
    END IF;
END
$$;
