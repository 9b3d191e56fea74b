//! The management commands (`dereth-tracker user|token|key ...`): they change who may use the
//! tracker in its database; a running tracker notices within a second (and closes the sockets of
//! whatever was removed, revoked or lowered).
//!
//! Secrets are shown once, when they are created, and stored only as hashes.

use std::io::BufRead;

use crate::config::{KeyAction, Role, TokenAction, UserAction};
use crate::identity::secrets::{hash_password, new_secret, secret_hash};
use crate::store::{AccessChange, Store, StoreError};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Why a management command failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a command gets a password from: a line of standard input when it is not a terminal,
/// else none (a password is generated).
pub struct PasswordSource<'a> {
    pub input: &'a mut dyn BufRead,
    pub interactive: bool,
}

impl PasswordSource<'_> {
    /// The password given, or a generated one (then `true`: it must be shown).
    fn password(&mut self) -> Result<(String, bool), ManageError> {
        if !self.interactive {
            let mut line = String::new();
            self.input
                .read_line(&mut line)
                .map_err(|e| ManageError::Refused(format!("reading the password: {e}")))?;
            let given = line.trim_end_matches(['\r', '\n']);
            if !given.is_empty() {
                check_password(given)?;
                return Ok((given.to_owned(), false));
            }
        }
        Ok((new_secret(""), true))
    }
}

/// A password must be long enough to resist guessing.
pub fn check_password(password: &str) -> Result<(), ManageError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ManageError::Refused(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// A name of an account, token or key: 1 to 64 characters, no control characters.
pub fn check_name(name: &str) -> Result<(), ManageError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 64
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ManageError::Refused(
            "a name has 1 to 64 characters and no control characters".into(),
        ))
    }
}

fn hashed(password: &str) -> Result<String, ManageError> {
    hash_password(password).map_err(|e| ManageError::Refused(e.to_string()))
}

fn found(done: bool, what: &str, name: &str) -> Result<(), ManageError> {
    if done {
        Ok(())
    } else {
        Err(ManageError::Refused(format!("no {what} named `{name}`")))
    }
}

/// Accounts or tokens as `dereth-tracker ... list` prints them: name, role, since when.
fn listing<'a>(
    rows: impl Iterator<Item = (&'a String, &'a String, chrono::DateTime<chrono::Utc>)>,
) -> String {
    rows.map(|(name, role, since)| format!("{name}\t{role}\tsince {}", since.to_rfc3339()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a `user` command; what to print.
pub async fn user(
    store: &Store,
    action: &UserAction,
    mut source: PasswordSource<'_>,
) -> Result<String, ManageError> {
    match action {
        UserAction::Add { name, role } => {
            check_name(name)?;
            let (password, generated) = source.password()?;
            let change = AccessChange::PutAccount {
                name: name.clone(),
                role: role.name().to_owned(),
                password_hash: hashed(&password)?,
            };
            store.change_access(&change).await?;
            Ok(if generated {
                format!("account `{name}` ({role}) created; its password (shown once): {password}")
            } else {
                format!("account `{name}` ({role}) created")
            })
        }
        UserAction::List => {
            let accounts = store.accounts().await?;
            Ok(listing(
                accounts.iter().map(|a| (&a.name, &a.role, a.created_at)),
            ))
        }
        UserAction::Passwd { name } => {
            let (password, generated) = source.password()?;
            let change = AccessChange::SetPassword {
                name: name.clone(),
                password_hash: hashed(&password)?,
            };
            found(store.change_access(&change).await?, "account", name)?;
            Ok(if generated {
                format!("new password of `{name}` (shown once): {password}")
            } else {
                format!("password of `{name}` changed; its browsers are signed out")
            })
        }
        UserAction::Role { name, role } => {
            let change = AccessChange::SetRole {
                name: name.clone(),
                role: role.name().to_owned(),
            };
            found(store.change_access(&change).await?, "account", name)?;
            Ok(format!("`{name}` is now {role}"))
        }
        UserAction::Remove { name } => {
            let change = AccessChange::RemoveAccount { name: name.clone() };
            found(store.change_access(&change).await?, "account", name)?;
            Ok(format!(
                "account `{name}` removed; its browsers are signed out"
            ))
        }
    }
}

/// Creates an API token; the token (to show once).
pub async fn add_token(store: &Store, name: &str, role: Role) -> Result<String, ManageError> {
    check_name(name)?;
    let token = new_secret("dt_");
    let change = AccessChange::AddToken {
        name: name.to_owned(),
        role: role.name().to_owned(),
        token_hash: secret_hash(&token),
    };
    store
        .change_access(&change)
        .await
        .map_err(|e| already(e, "token", name))?;
    Ok(token)
}

/// Creates a plugin key for `characters` (none: bound as it speaks); the key (to show once).
pub async fn add_key(
    store: &Store,
    name: &str,
    characters: &[String],
) -> Result<String, ManageError> {
    check_name(name)?;
    if name == crate::identity::LEGACY_KEY {
        return Err(ManageError::Refused(format!(
            "`{name}` is the name of the shared secret's key; choose another"
        )));
    }
    let key = new_secret("dk_");
    let change = AccessChange::AddKey {
        name: name.to_owned(),
        key_hash: secret_hash(&key),
        characters: characters.to_vec(),
    };
    store
        .change_access(&change)
        .await
        .map_err(|e| already(e, "key", name))?;
    Ok(key)
}

/// A name taken already is said so; other failures are the store's.
fn already(err: StoreError, what: &str, name: &str) -> ManageError {
    if err.is_data_error() {
        ManageError::Refused(format!("a {what} named `{name}` exists already"))
    } else {
        ManageError::Store(err)
    }
}

/// Runs a `token` command; what to print.
pub async fn token(store: &Store, action: &TokenAction) -> Result<String, ManageError> {
    match action {
        TokenAction::Add { name, role } => {
            let token = add_token(store, name, *role).await?;
            Ok(format!(
                "token `{name}` ({role}) created; send it as `Authorization: Bearer TOKEN`. \
                 The token (shown once): {token}"
            ))
        }
        TokenAction::List => {
            let tokens = store.api_tokens().await?;
            Ok(listing(
                tokens.iter().map(|t| (&t.name, &t.role, t.created_at)),
            ))
        }
        TokenAction::Remove { name } => {
            let change = AccessChange::RemoveToken { name: name.clone() };
            found(store.change_access(&change).await?, "token", name)?;
            Ok(format!("token `{name}` removed"))
        }
    }
}

/// Runs a `key` command; what to print.
pub async fn key(store: &Store, action: &KeyAction) -> Result<String, ManageError> {
    match action {
        KeyAction::Add { name, characters } => {
            let key = add_key(store, name, characters).await?;
            let scope = if characters.is_empty() {
                "characters are bound to it as it first speaks for them".to_owned()
            } else {
                format!("it speaks for {} only", characters.join(", "))
            };
            Ok(format!(
                "plugin key `{name}` created ({scope}); configure it in the plugin where the \
                 shared secret went. The key (shown once): {key}"
            ))
        }
        KeyAction::List => {
            let keys = store.plugin_keys().await?;
            let bindings = store.bindings(None).await?;
            let count = |name: &str| bindings.iter().filter(|b| b.key_name == name).count();
            let mut lines: Vec<String> = keys
                .iter()
                .map(|k| {
                    let state = match k.revoked_at {
                        Some(at) => format!("revoked {}", at.to_rfc3339()),
                        None => "active".to_owned(),
                    };
                    format!("{}\t{state}\t{} characters", k.name, count(&k.name))
                })
                .collect();
            let legacy = count(crate::identity::LEGACY_KEY);
            if legacy > 0 {
                lines.push(format!("legacy (SHARED_SECRET)\t{legacy} characters"));
            }
            Ok(lines.join("\n"))
        }
        KeyAction::Revoke { name } => {
            let change = AccessChange::RevokeKey { name: name.clone() };
            found(store.change_access(&change).await?, "active key", name)?;
            Ok(format!(
                "key `{name}` revoked: refused from now on, its connections close within a second"
            ))
        }
        KeyAction::Move { name, characters } => {
            let change = AccessChange::MoveCharacters {
                key: name.clone(),
                characters: characters.clone(),
            };
            found(store.change_access(&change).await?, "key", name)?;
            Ok(format!(
                "{} now speak(s) with key `{name}`",
                characters.join(", ")
            ))
        }
        KeyAction::Free { characters } => {
            let change = AccessChange::FreeCharacters {
                characters: characters.clone(),
            };
            store.change_access(&change).await?;
            Ok(format!("{} freed", characters.join(", ")))
        }
    }
}
