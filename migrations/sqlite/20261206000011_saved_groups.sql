-- Groups of characters a person keeps ("healers", "mule accounts"), per account or API token
-- (`owner` is `account:NAME` or `token:NAME`); `characters` is a JSON array of names.
CREATE TABLE saved_groups (
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    characters TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
