-- Placeholder that keeps version numbers aligned with migrations/postgres, whose migration of this
-- number enables TimescaleDB. SQLite has no equivalent; nothing to do.
SELECT 1;
