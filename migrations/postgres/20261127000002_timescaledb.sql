-- Use TimescaleDB where the server offers it: enable the extension and turn telemetry_events into a
-- hypertable partitioned on its time column. On plain PostgreSQL this does nothing (the server logs
-- which mode it runs in at startup).
--
-- The extension is only created when the server preloads it (shared_preload_libraries): creating
-- it otherwise ends the session with FATAL, which no exception handler can catch. A server that
-- lists the extension but cannot load it is reported with a warning instead of failing.
-- (Amended after release to add the preload check; the store accepts the first version's
-- checksum, since both have the same effect wherever the first one succeeded.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        RETURN;
    END IF;
    -- The preloaded loader defines this setting (shared_preload_libraries itself is readable by
    -- superusers only).
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       AND current_setting('timescaledb.max_background_workers', true) IS NULL THEN
        RAISE WARNING 'timescaledb is installed but not in shared_preload_libraries; '
                      'running as plain PostgreSQL';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('telemetry_events', 'timestamp',
                                  if_not_exists => TRUE, migrate_data => TRUE);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'timescaledb is available but could not be enabled: %', SQLERRM;
    END;
END
$$;
