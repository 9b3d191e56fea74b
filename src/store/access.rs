//! Who may use the tracker, as stored: accounts, API tokens, plugin keys and the characters
//! bound to them, browser sessions, and the audit trail of commands. One SQL text for both
//! backends, over the same runner as the reads. Every change of accounts, tokens, keys or
//! bindings bumps `access_version` in the same transaction, so every instance notices it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::StoreError;
use super::reads::Runner;
use super::sql::{Arg, Sql};

/// A person who signs in.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRow {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A script's token (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub name: String,
    pub role: String,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A plugin key (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    pub name: String,
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The key a character belongs to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BindingRow {
    pub character_name: String,
    pub key_name: String,
    /// 1 when an admin listed it for the key, 0 when bound on first use.
    pub listed: i64,
    pub bound_at: DateTime<Utc>,
}

/// One command sent to a plugin, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The account or token that sent it.
    pub actor: String,
    /// How it was identified: `account`, `token`, `proxy`, `command-token`, `demo`.
    pub via: String,
    pub character_name: String,
    pub command: String,
    /// `delivered`, `not_connected`, `busy`, `rate_limited`, `unauthorized`, ...
    pub result: String,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub character: Option<String>,
    /// Only entries older than this id (the cursor of the next page).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A change to who may use the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// Creates the account, or replaces its role and password.
    PutAccount {
        name: String,
        role: String,
        password_hash: String,
    },
    SetRole {
        name: String,
        role: String,
    },
    SetPassword {
        name: String,
        password_hash: String,
    },
    /// Removes the account and ends its browser sessions.
    RemoveAccount {
        name: String,
    },
    AddToken {
        name: String,
        role: String,
        token_hash: String,
    },
    RemoveToken {
        name: String,
    },
    /// Adds a plugin key; the listed characters are bound to it (moved from any other key).
    AddKey {
        name: String,
        key_hash: String,
        characters: Vec<String>,
    },
    /// Refuses the key from now on (its characters stay bound to it until moved or freed).
    RevokeKey {
        name: String,
    },
    /// Binds characters to a key, moving them from any other.
    MoveCharacters {
        key: String,
        characters: Vec<String>,
    },
    /// Frees characters: the next key to speak for one binds it.
    FreeCharacters {
        characters: Vec<String>,
    },
    /// Ends one browser session (logout).
    EndSession {
        token_hash: String,
    },
}

/// The access half of the storage contract.
#[async_trait]
pub trait StoreAccess: Send + Sync {
    /// How many times access has changed (compare to notice a change).
    async fn access_version(&self) -> Result<i64, StoreError>;
    async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError>;
    async fn api_tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    async fn plugin_keys(&self) -> Result<Vec<KeyRow>, StoreError>;
    /// The characters bound to keys, all of them or those of one key.
    async fn bindings(&self, key: Option<&str>) -> Result<Vec<BindingRow>, StoreError>;
    /// Applies a change (and bumps the version); false when it named nothing that exists.
    async fn change_access(&self, change: &AccessChange) -> Result<bool, StoreError>;
    /// The key `character` belongs to, if any.
    async fn character_key(&self, character: &str) -> Result<Option<String>, StoreError>;
    /// How many characters are bound to `key`.
    async fn key_character_count(&self, key: &str) -> Result<usize, StoreError>;
    /// The key `character` belongs to, binding it to `key` first when it belongs to none.
    async fn bind_on_first_use(&self, character: &str, key: &str) -> Result<String, StoreError>;
    /// Starts a browser session of `account` until `expires_at`.
    async fn start_session(
        &self,
        token_hash: &str,
        account: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The account and expiry of a browser session, if it exists.
    async fn session(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError>;
    /// Forgets sessions that expired before `now`.
    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Keeps one command in the audit trail.
    async fn audit(&self, entry: &AuditRow) -> Result<(), StoreError>;
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>, StoreError>;
}

const BUMP: &str = "UPDATE access_version SET version = version + 1 WHERE id = 1";

/// The statements of a change; the first one's row count says whether it found its subject.
fn statements(change: &AccessChange, now: DateTime<Utc>) -> Vec<Sql> {
    let one = |text: &str, args: Vec<Arg>| Sql::new(text, args);
    let bind = |key: &str, character: &str, listed: i64| {
        one(
            "INSERT INTO key_characters (character_name, key_name, listed, bound_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (character_name) DO UPDATE SET \
             key_name = excluded.key_name, listed = excluded.listed, bound_at = excluded.bound_at",
            vec![character.into(), key.into(), listed.into(), now.into()],
        )
    };
    match change {
        AccessChange::PutAccount {
            name,
            role,
            password_hash,
        } => vec![one(
            "INSERT INTO accounts (name, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE SET \
             role = excluded.role, password_hash = excluded.password_hash, \
             updated_at = excluded.updated_at",
            vec![
                name.as_str().into(),
                role.as_str().into(),
                password_hash.as_str().into(),
                now.into(),
            ],
        )],
        AccessChange::SetRole { name, role } => vec![one(
            "UPDATE accounts SET role = $2, updated_at = $3 WHERE name = $1",
            vec![name.as_str().into(), role.as_str().into(), now.into()],
        )],
        AccessChange::SetPassword {
            name,
            password_hash,
        } => vec![
            one(
                "UPDATE accounts SET password_hash = $2, updated_at = $3 WHERE name = $1",
                vec![
                    name.as_str().into(),
                    password_hash.as_str().into(),
                    now.into(),
                ],
            ),
            // A new password signs out every browser of the account.
            one(
                "DELETE FROM web_sessions WHERE account = $1",
                vec![name.as_str().into()],
            ),
        ],
        AccessChange::RemoveAccount { name } => vec![
            one(
                "DELETE FROM accounts WHERE name = $1",
                vec![name.as_str().into()],
            ),
            one(
                "DELETE FROM web_sessions WHERE account = $1",
                vec![name.as_str().into()],
            ),
            one(
                "DELETE FROM saved_groups WHERE owner = $1",
                vec![super::groups::owner_of_account(name).into()],
            ),
        ],
        AccessChange::AddToken {
            name,
            role,
            token_hash,
        } => vec![one(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4)",
            vec![
                name.as_str().into(),
                role.as_str().into(),
                token_hash.as_str().into(),
                now.into(),
            ],
        )],
        AccessChange::RemoveToken { name } => vec![
            one(
                "DELETE FROM api_tokens WHERE name = $1",
                vec![name.as_str().into()],
            ),
            one(
                "DELETE FROM saved_groups WHERE owner = $1",
                vec![super::groups::owner_of_token(name).into()],
            ),
        ],
        AccessChange::AddKey {
            name,
            key_hash,
            characters,
        } => {
            let mut out = vec![one(
                "INSERT INTO plugin_keys (name, key_hash, created_at) VALUES ($1, $2, $3)",
                vec![name.as_str().into(), key_hash.as_str().into(), now.into()],
            )];
            out.extend(characters.iter().map(|c| bind(name, c, 1)));
            out
        }
        AccessChange::RevokeKey { name } => vec![one(
            "UPDATE plugin_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            vec![name.as_str().into(), now.into()],
        )],
        AccessChange::MoveCharacters { key, characters } => {
            let mut out = vec![one(
                // One row when the key exists (the shared secret's `legacy` key always does).
                "UPDATE access_version SET version = version WHERE id = 1 \
                 AND ($1 = 'legacy' OR EXISTS (SELECT 1 FROM plugin_keys WHERE name = $1))",
                vec![key.as_str().into()],
            )];
            out.extend(characters.iter().map(|c| bind(key, c, 1)));
            out
        }
        AccessChange::FreeCharacters { characters } => characters
            .iter()
            .map(|c| {
                one(
                    "DELETE FROM key_characters WHERE character_name = $1",
                    vec![c.as_str().into()],
                )
            })
            .collect(),
        AccessChange::EndSession { token_hash } => vec![one(
            "DELETE FROM web_sessions WHERE token_hash = $1",
            vec![token_hash.as_str().into()],
        )],
    }
}

#[async_trait]
impl<R: Runner> StoreAccess for R {
    async fn access_version(&self) -> Result<i64, StoreError> {
        let sql = Sql::new(
            "SELECT version FROM access_version WHERE id = 1",
            Vec::new(),
        );
        let rows: Vec<(i64,)> = self.rows(sql).await?;
        Ok(rows.first().map_or(0, |r| r.0))
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let sql = Sql::new(
            "SELECT name, role, password_hash, created_at, updated_at FROM accounts ORDER BY name",
            Vec::new(),
        );
        self.rows(sql).await
    }

    async fn api_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = Sql::new(
            "SELECT name, role, token_hash, created_at FROM api_tokens ORDER BY name",
            Vec::new(),
        );
        self.rows(sql).await
    }

    async fn plugin_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let sql = Sql::new(
            "SELECT name, key_hash, created_at, revoked_at FROM plugin_keys ORDER BY name",
            Vec::new(),
        );
        self.rows(sql).await
    }

    async fn bindings(&self, key: Option<&str>) -> Result<Vec<BindingRow>, StoreError> {
        let sql = Sql::new(
            "SELECT character_name, key_name, listed, bound_at FROM key_characters \
             WHERE CAST($1 AS TEXT) IS NULL OR key_name = $1 ORDER BY character_name",
            vec![key.into()],
        );
        self.rows(sql).await
    }

    async fn change_access(&self, change: &AccessChange) -> Result<bool, StoreError> {
        let mut batch = statements(change, Utc::now());
        batch.push(Sql::new(BUMP, Vec::new()));
        let changed = self.write_pool().transaction(&batch).await?;
        Ok(match change {
            // Freeing characters nobody bound is not an error.
            AccessChange::FreeCharacters { .. } => true,
            _ => changed.first().is_some_and(|n| *n > 0),
        })
    }

    async fn character_key(&self, character: &str) -> Result<Option<String>, StoreError> {
        let sql = Sql::new(
            "SELECT key_name FROM key_characters WHERE character_name = $1",
            vec![character.into()],
        );
        let rows: Vec<(String,)> = self.rows(sql).await?;
        Ok(rows.into_iter().next().map(|r| r.0))
    }

    async fn key_character_count(&self, key: &str) -> Result<usize, StoreError> {
        let sql = Sql::new(
            "SELECT count(*) FROM key_characters WHERE key_name = $1",
            vec![key.into()],
        );
        let rows: Vec<(i64,)> = self.rows(sql).await?;
        Ok(rows
            .first()
            .map_or(0, |r| usize::try_from(r.0).unwrap_or(0)))
    }

    async fn bind_on_first_use(&self, character: &str, key: &str) -> Result<String, StoreError> {
        let bind = Sql::new(
            "INSERT INTO key_characters (character_name, key_name, listed, bound_at) \
             VALUES ($1, $2, 0, $3) ON CONFLICT (character_name) DO NOTHING",
            vec![character.into(), key.into(), Utc::now().into()],
        );
        self.write_pool().execute(bind).await?;
        Ok(self
            .character_key(character)
            .await?
            .unwrap_or_else(|| key.to_owned()))
    }

    async fn start_session(
        &self,
        token_hash: &str,
        account: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = Sql::new(
            "INSERT INTO web_sessions (token_hash, account, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
            vec![
                token_hash.into(),
                account.into(),
                Utc::now().into(),
                expires_at.into(),
            ],
        );
        self.write_pool().execute(sql).await.map(|_| ())
    }

    async fn session(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let sql = Sql::new(
            "SELECT account, expires_at FROM web_sessions WHERE token_hash = $1",
            vec![token_hash.into()],
        );
        let rows: Vec<(String, DateTime<Utc>)> = self.rows(sql).await?;
        Ok(rows.into_iter().next())
    }

    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = Sql::new(
            "DELETE FROM web_sessions WHERE expires_at < $1",
            vec![now.into()],
        );
        self.write_pool().execute(sql).await
    }

    async fn audit(&self, entry: &AuditRow) -> Result<(), StoreError> {
        let sql = Sql::new(
            "INSERT INTO command_audit (at, actor, via, character_name, command, result) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                entry.at.into(),
                entry.actor.as_str().into(),
                entry.via.as_str().into(),
                entry.character_name.as_str().into(),
                entry.command.as_str().into(),
                entry.result.as_str().into(),
            ],
        );
        self.write_pool().execute(sql).await.map(|_| ())
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        let sql = Sql::new(
            "SELECT id, at, actor, via, character_name, command, result FROM command_audit \
             WHERE (CAST($1 AS TEXT) IS NULL OR character_name = $1) \
               AND (CAST($2 AS BIGINT) IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
            vec![
                q.character.as_deref().into(),
                q.before.into(),
                q.limit.into(),
            ],
        );
        self.rows(sql).await
    }
}
