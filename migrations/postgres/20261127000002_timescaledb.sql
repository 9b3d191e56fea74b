-- Use TimescaleDB where the server offers it: enable the extension and turn telemetry_events into a
-- hypertable partitioned on its time column. On plain PostgreSQL this does nothing (the server logs
-- which mode it runs in at startup). A server that lists the extension but cannot load it (not in
-- shared_preload_libraries) is reported with a warning instead of failing the migration.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            PERFORM create_hypertable('telemetry_events', 'timestamp',
                                      if_not_exists => TRUE, migrate_data => TRUE);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'timescaledb is available but could not be enabled: %', SQLERRM;
        END;
    END IF;
END
$$;
