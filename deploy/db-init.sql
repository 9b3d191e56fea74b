-- Run once by the database image when it first creates the database (mounted into
-- /docker-entrypoint-initdb.d by both compose files; psql runs it as the owner, in the tracker's
-- database).
--
-- PostgreSQL lets every role connect to a new database (CONNECT and TEMPORARY are granted to
-- PUBLIC), and any role that connects may NOTIFY on the tracker's cluster channel or read what
-- other grants allow. Only the tracker's own role needs this database: take those grants back,
-- so a role created later for something else (a backup agent, a dashboard) gets nothing here
-- until it is granted it by name.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
-- Nor may other roles create objects in the public schema (PostgreSQL 15 and later already
-- refuse it; older servers did not).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
