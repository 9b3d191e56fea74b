-- Placeholder that keeps version numbers aligned with migrations/postgres, whose migration of this
-- number makes spawn_events a TimescaleDB hypertable. SQLite has no equivalent; nothing to do.
SELECT 1;
