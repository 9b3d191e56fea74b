-- Who may use the tracker: people (accounts, with a role), scripts (API tokens), plugins (keys,
-- each speaking for the characters bound to it), the sessions of signed-in browsers, and the
-- audit trail of every command. Secrets are stored only as hashes: passwords with argon2id,
-- high-entropy tokens and keys with SHA-256.
CREATE TABLE accounts (
    name          TEXT        PRIMARY KEY,
    role          TEXT        NOT NULL,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
    name       TEXT        PRIMARY KEY,
    role       TEXT        NOT NULL,
    token_hash TEXT        NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE plugin_keys (
    name       TEXT        PRIMARY KEY,
    key_hash   TEXT        NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

-- The key each character belongs to: bound on first use, or listed by an admin (`listed` 1).
CREATE TABLE key_characters (
    character_name TEXT        PRIMARY KEY,
    key_name       TEXT        NOT NULL,
    listed         BIGINT      NOT NULL,
    bound_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX key_characters_key ON key_characters (key_name);

CREATE TABLE web_sessions (
    token_hash TEXT        PRIMARY KEY,
    account    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account);

CREATE TABLE command_audit (
    id             BIGSERIAL   PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    actor          TEXT        NOT NULL,
    via            TEXT        NOT NULL,
    character_name TEXT        NOT NULL,
    command        TEXT        NOT NULL,
    result         TEXT        NOT NULL
);
CREATE INDEX command_audit_at ON command_audit (at DESC);
CREATE INDEX command_audit_character ON command_audit (character_name, at DESC);

-- Bumped by every change of the tables above, so every running instance notices (within a
-- second) a key revoked or an account removed from the command line or another instance.
CREATE TABLE access_version (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO access_version (id, version) VALUES (1, 0);
