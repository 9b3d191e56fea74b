//! The directory: who may use the tracker, as the database says, held in memory so that no
//! request waits for the database to be recognized. It is reloaded when `access_version`
//! changes (checked every second, and at once after a change made here), and then closes the
//! sockets of whatever was removed, revoked or lowered: each socket holds a [`Watch`].
//!
//! Plugin keys speak for the characters bound to them: a character is bound to the first key
//! that speaks for it (unless an admin listed it for a key), and no other key may speak for it.
//! The legacy shared secret is one key, named [`LEGACY_KEY`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::roles::{Principal, Role, Via};
use super::secrets::{new_secret, secret_hash, verify_password};
use crate::limits::RateLimiter;
use crate::secret::Secret;
use crate::store::{AccessChange, Store, StoreError};

/// Longest a new character's first frame waits to learn which key it belongs to.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Least time between two reloads asked for by unknown credentials.
const CATCH_UP_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The name of the key the legacy shared secret (SHARED_SECRET) stands for.
pub(crate) const LEGACY_KEY: &str = "legacy";

/// What the directory needs to know of the tracker's settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectoryConfig {
    /// PUBLIC_READ: anyone may read.
    pub public_read: bool,
    /// The tracker listens on loopback only.
    pub loopback: bool,
    /// Demo mode on loopback: anyone on this machine may command the simulated characters.
    pub demo: bool,
    /// SHARED_SECRET and SHARED_SECRET_PREVIOUS: the legacy key.
    pub legacy_secrets: Vec<Secret>,
    /// COMMAND_TOKEN: a legacy commander credential in command frames.
    pub command_token: Option<Secret>,
    /// AUTH_USER_DEFAULT_ROLE.
    pub proxy_default_role: Option<Role>,
    /// How long a browser stays signed in.
    pub session_ttl: chrono::Duration,
}

/// What a socket watches: closed when this is removed, revoked, lowered or signed out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Watch {
    Account(Arc<str>),
    Token(Arc<str>),
    Key(Arc<str>),
    Session(Arc<str>),
}

impl Watch {
    /// What a principal's sockets watch.
    pub(crate) fn of(principal: &Principal) -> Self {
        match &principal.via {
            Via::Session(hash) => Self::Session(hash.clone()),
            Via::Token => Self::Token(principal.name.clone()),
            Via::Proxy => Self::Account(principal.name.clone()),
        }
    }
}

#[derive(Debug, Clone)]
struct Account {
    role: Role,
    password_hash: String,
}

/// The directory as last loaded.
#[derive(Debug, Default)]
struct Snapshot {
    accounts: HashMap<String, Account>,
    /// Token hash -> (name, role).
    tokens: HashMap<String, (Arc<str>, Role)>,
    /// Key hash -> name, of keys not revoked.
    keys: HashMap<String, Arc<str>>,
    /// Names of every key, revoked or not.
    key_names: HashSet<String>,
}

/// A browser session as cached: its account and when it expires.
type SessionEntry = (String, DateTime<Utc>);

/// The key a character belongs to, or why it may not be spoken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// It belongs to the asking key (now).
    Ours,
    /// It belongs to this other key.
    Theirs(Arc<str>),
    /// The asking key already speaks for as many characters as it may.
    Full,
}

/// Why signing in failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    #[error("wrong name or password")]
    Wrong,
    #[error("the session could not be stored: {0}")]
    Store(#[from] StoreError),
}

/// Who may use the tracker.
#[derive(Debug)]
pub(crate) struct Directory {
    store: Store,
    config: DirectoryConfig,
    snapshot: RwLock<Arc<Snapshot>>,
    version: AtomicI64,
    /// Signed-in browsers seen lately: session token hash -> (account, expiry).
    sessions: Mutex<HashMap<Arc<str>, SessionEntry>>,
    /// Every character bound to a key -> that key (as of the last reload, plus the bindings
    /// made here since).
    bindings: Mutex<HashMap<String, Arc<str>>>,
    /// Bumped when a character moves to another key or is freed: connections then check that
    /// the characters they speak for are still theirs.
    binding_epoch: AtomicU64,
    /// Characters bound per key (as looked up), for the per-key bound.
    bound_count: Mutex<HashMap<Arc<str>, usize>>,
    /// Bindings made in memory and not stored yet.
    unstored: Mutex<Vec<(String, Arc<str>)>>,
    /// Woken when a binding is made.
    stored: tokio::sync::Notify,
    watches: Mutex<HashMap<Watch, CancellationToken>>,
    /// When an unknown credential last made this instance reload.
    caught_up: Mutex<Option<std::time::Instant>>,
    reloading: tokio::sync::Mutex<()>,
    limits: KeyLimits,
    /// Rares reported per key in the current minute.
    key_rares: RateLimiter<Arc<str>>,
}

/// How much one plugin key may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyLimits {
    /// Characters one key speaks for (KEY_MAX_CHARACTERS).
    pub max_characters: usize,
    /// Rares all characters of one key may report in a minute (KEY_RARES_PER_MINUTE).
    pub rares_per_minute: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or removal: a poisoned lock still guards consistent maps.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Directory {
    /// Loads the directory from `store`.
    pub(crate) async fn load(
        store: Store,
        config: DirectoryConfig,
        limits: KeyLimits,
    ) -> Result<Self, StoreError> {
        let directory = Self {
            store,
            config,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            version: AtomicI64::new(-1),
            sessions: Mutex::new(HashMap::new()),
            bindings: Mutex::new(HashMap::new()),
            binding_epoch: AtomicU64::new(0),
            bound_count: Mutex::new(HashMap::new()),
            unstored: Mutex::new(Vec::new()),
            stored: tokio::sync::Notify::new(),
            watches: Mutex::new(HashMap::new()),
            caught_up: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            limits,
            key_rares: RateLimiter::new(
                limits.rares_per_minute,
                std::time::Duration::from_secs(60),
            ),
        };
        directory.refresh().await?;
        Ok(directory)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reloads now, unless that was done within the last quarter second: a credential this
    /// instance does not know may have been created a moment ago (by `dereth-tracker token add`,
    /// or on another instance). True when anything changed. However many unknown credentials
    /// arrive, this asks the database at most four times a second.
    pub(crate) async fn catch_up(&self) -> bool {
        let now = std::time::Instant::now();
        {
            let mut last = lock(&self.caught_up);
            if last.is_some_and(|t| now.duration_since(t) < CATCH_UP_EVERY) {
                return false;
            }
            *last = Some(now);
        }
        match self.refresh().await {
            Ok(changed) => changed,
            Err(err) => {
                tracing::debug!(%err, "could not check for access changes");
                false
            }
        }
    }

    /// Reloads what changed since the last load and closes the sockets of what was removed,
    /// revoked, lowered or signed out. True when anything changed.
    pub(crate) async fn refresh(&self) -> Result<bool, StoreError> {
        // One reload at a time (the once-a-second follower and catch-ups).
        let _reloading = self.reloading.lock().await;
        let version = self.store.access_version().await?;
        if version == self.version.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut next = Snapshot::default();
        for a in self.store.accounts().await? {
            let Ok(role) = a.role.parse() else {
                tracing::warn!(account = %a.name, role = %a.role, "account with an unknown role ignored");
                continue;
            };
            let account = Account {
                role,
                password_hash: a.password_hash,
            };
            next.accounts.insert(a.name, account);
        }
        for t in self.store.api_tokens().await? {
            if let Ok(role) = t.role.parse() {
                next.tokens
                    .insert(t.token_hash, (Arc::from(t.name.as_str()), role));
            }
        }
        for k in self.store.plugin_keys().await? {
            next.key_names.insert(k.name.clone());
            if k.revoked_at.is_none() {
                next.keys.insert(k.key_hash, Arc::from(k.name.as_str()));
            }
        }
        let bindings = self.store.bindings(None).await?;
        let previous = {
            let mut guard = self
                .snapshot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut *guard, Arc::new(next))
        };
        self.version.store(version, Ordering::Relaxed);
        self.close_what_changed(&previous, &self.snapshot(), bindings)
            .await;
        Ok(true)
    }

    /// After a reload: ends the sockets whose principal or key lost what it had.
    async fn close_what_changed(
        &self,
        before: &Snapshot,
        now: &Snapshot,
        bindings: Vec<crate::store::BindingRow>,
    ) {
        let mut ended = Vec::new();
        for (name, account) in &before.accounts {
            let still = now
                .accounts
                .get(name)
                .is_some_and(|a| a.role >= account.role);
            if !still {
                ended.push(Watch::Account(Arc::from(name.as_str())));
            }
        }
        for (hash, (name, role)) in &before.tokens {
            if now.tokens.get(hash).is_none_or(|(_, r)| r < role) {
                ended.push(Watch::Token(name.clone()));
            }
        }
        for name in before.keys.values() {
            if !now.keys.values().any(|n| n == name) {
                ended.push(Watch::Key(name.clone()));
            }
        }
        // Every binding as stored, plus those made here and not stored yet. A character that
        // moved to another key or was freed: the connections speaking for it let it go (the
        // key's other characters carry on).
        let mut bound: HashMap<String, Arc<str>> = bindings
            .into_iter()
            .map(|b| (b.character_name, Arc::from(b.key_name.as_str())))
            .collect();
        for (character, key) in lock(&self.unstored).iter() {
            bound
                .entry(character.clone())
                .or_insert_with(|| key.clone());
        }
        {
            let mut cached = lock(&self.bindings);
            let moved = cached
                .iter()
                .any(|(character, key)| bound.get(character) != Some(key));
            let mut counts: HashMap<Arc<str>, usize> = HashMap::new();
            for key in bound.values() {
                *counts.entry(key.clone()).or_default() += 1;
            }
            *cached = bound;
            *lock(&self.bound_count) = counts;
            if moved {
                self.binding_epoch.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Browser sessions: signed out (here or elsewhere), or of an account that went.
        let watched: Vec<Arc<str>> = lock(&self.watches)
            .keys()
            .filter_map(|w| match w {
                Watch::Session(hash) => Some(hash.clone()),
                _ => None,
            })
            .collect();
        lock(&self.sessions).clear();
        for hash in watched {
            match self.store.session(&hash).await {
                // Still there, and not lowered: the session carries on.
                Ok(Some((account, _)))
                    if now.accounts.get(&account).is_some_and(|a| {
                        before
                            .accounts
                            .get(&account)
                            .is_none_or(|b| a.role >= b.role)
                    }) => {}
                Ok(_) => ended.push(Watch::Session(hash)),
                Err(err) => tracing::warn!(%err, "could not check a browser session"),
            }
        }
        let mut watches = lock(&self.watches);
        for watch in ended {
            if let Some(token) = watches.remove(&watch) {
                tracing::info!(?watch, "access withdrawn: closing its connections");
                token.cancel();
            }
        }
    }

    /// A token cancelled when `what` is removed, revoked, lowered or signed out.
    pub(crate) fn watch(&self, what: Watch) -> CancellationToken {
        lock(&self.watches).entry(what).or_default().child_token()
    }

    /// Whether anyone may read without signing in: PUBLIC_READ, or a loopback tracker that
    /// has no account and no token yet (a newcomer's first run).
    pub(crate) fn open_reads(&self) -> bool {
        if self.config.public_read {
            return true;
        }
        let snapshot = self.snapshot();
        self.config.loopback && snapshot.accounts.is_empty() && snapshot.tokens.is_empty()
    }

    /// Whether the tracker listens on loopback only (nothing beyond this machine reaches it
    /// directly).
    pub(crate) fn loopback(&self) -> bool {
        self.config.loopback
    }

    /// Whether anyone may command: demo mode on loopback only.
    pub(crate) fn anyone_may_command(&self) -> bool {
        self.config.demo && self.config.loopback
    }

    /// Whether any account exists.
    pub(crate) fn has_accounts(&self) -> bool {
        !self.snapshot().accounts.is_empty()
    }

    /// The plugin key a presented secret is, if any (the legacy shared secret is [`LEGACY_KEY`]).
    pub(crate) fn plugin_key(&self, presented: &str) -> Option<Arc<str>> {
        if self
            .config
            .legacy_secrets
            .iter()
            .any(|s| s.matches(presented))
        {
            return Some(Arc::from(LEGACY_KEY));
        }
        self.snapshot().keys.get(&secret_hash(presented)).cloned()
    }

    /// Whether plugins can connect at all (a shared secret or a key exists).
    pub(crate) fn plugins_can_connect(&self) -> bool {
        !self.config.legacy_secrets.is_empty() || !self.snapshot().keys.is_empty()
    }

    /// The principal of an API token.
    pub(crate) fn bearer(&self, token: &str) -> Option<Principal> {
        let snapshot = self.snapshot();
        let (name, role) = snapshot.tokens.get(&secret_hash(token))?;
        Some(Principal {
            name: name.clone(),
            role: *role,
            via: Via::Token,
        })
    }

    /// The principal of a user an authenticating proxy names.
    pub(crate) fn proxy_user(&self, name: &str) -> Option<Principal> {
        let role = match self.snapshot().accounts.get(name) {
            Some(account) => account.role,
            None => self.config.proxy_default_role?,
        };
        Some(Principal {
            name: Arc::from(name),
            role,
            via: Via::Proxy,
        })
    }

    /// Whether a token is the legacy COMMAND_TOKEN.
    pub(crate) fn is_command_token(&self, presented: &str) -> bool {
        self.config
            .command_token
            .as_ref()
            .is_some_and(|t| t.matches(presented))
    }

    /// The principal of a signed-in browser's session cookie.
    pub(crate) async fn session(&self, cookie: &str) -> Option<Principal> {
        let hash: Arc<str> = Arc::from(secret_hash(cookie).as_str());
        let cached = lock(&self.sessions).get(&hash).cloned();
        let (account, expires) = match cached {
            Some(found) => found,
            None => {
                let found = match self.store.session(&hash).await {
                    Ok(found) => found?,
                    Err(err) => {
                        tracing::warn!(%err, "could not look a browser session up");
                        return None;
                    }
                };
                lock(&self.sessions).insert(hash.clone(), found.clone());
                found
            }
        };
        if expires < Utc::now() {
            lock(&self.sessions).remove(&hash);
            return None;
        }
        let role = self.snapshot().accounts.get(&account)?.role;
        Some(Principal {
            name: Arc::from(account.as_str()),
            role,
            via: Via::Session(hash),
        })
    }

    /// Checks a password and starts a session: the cookie value (shown once) and who it is.
    /// The check takes the same time whether or not the account exists.
    pub(crate) async fn login(
        &self,
        name: &str,
        password: &str,
    ) -> Result<(String, Principal), LoginError> {
        let mut account = self.snapshot().accounts.get(name).cloned();
        if account.is_none() && self.catch_up().await {
            account = self.snapshot().accounts.get(name).cloned();
        }
        // A hash to check against even for an unknown account, so timing says nothing.
        static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let hash = match &account {
            Some(a) => a.password_hash.clone(),
            None => DECOY
                .get_or_init(|| super::secrets::hash_password(&new_secret("")).unwrap_or_default())
                .clone(),
        };
        let presented = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&presented, &hash))
            .await
            .unwrap_or(false);
        let Some(account) = account.filter(|_| matches) else {
            return Err(LoginError::Wrong);
        };
        let cookie = new_secret("ds_");
        let hash: Arc<str> = Arc::from(secret_hash(&cookie).as_str());
        let expires = Utc::now() + self.config.session_ttl;
        self.store.start_session(&hash, name, expires).await?;
        lock(&self.sessions).insert(hash.clone(), (name.to_owned(), expires));
        let principal = Principal {
            name: Arc::from(name),
            role: account.role,
            via: Via::Session(hash),
        };
        Ok((cookie, principal))
    }

    /// Ends a browser session and closes its sockets (here at once, elsewhere within a second).
    pub(crate) async fn logout(&self, cookie: &str) -> Result<(), StoreError> {
        let token_hash = secret_hash(cookie);
        self.change(&AccessChange::EndSession { token_hash })
            .await
            .map(|_| ())
    }

    /// Applies a change to the stored directory and reloads it at once. False when the change
    /// named nothing that exists.
    pub(crate) async fn change(&self, change: &AccessChange) -> Result<bool, StoreError> {
        let done = self.store.change_access(change).await?;
        self.refresh().await?;
        Ok(done)
    }

    /// Whether `key` may speak for `character`. A character that belongs to no key (or whose
    /// key cannot be looked up right now: the database is down) is bound to `key` at once, in
    /// memory, and the binding is stored in the background ([`Directory::store_bindings`]): the
    /// read path never waits for a write. Should the database then say the character belongs
    /// to another key (two instances raced, or an outage hid it), that key wins and this one's
    /// connections are closed.
    pub(crate) async fn bind(&self, character: &str, key: &Arc<str>) -> Binding {
        let known = lock(&self.bindings).get(character).cloned();
        if let Some(owner) = known {
            return Self::binding(owner, key);
        }
        let looked = tokio::time::timeout(LOOKUP_TIMEOUT, self.store.character_key(character));
        if let Ok(Ok(Some(owner))) = looked.await {
            let owner: Arc<str> = Arc::from(owner.as_str());
            lock(&self.bindings).insert(character.to_owned(), owner.clone());
            return Self::binding(owner, key);
        }
        let cached = lock(&self.bound_count).get(key).copied();
        let count = match cached {
            Some(n) => n,
            None => {
                let counted =
                    tokio::time::timeout(LOOKUP_TIMEOUT, self.store.key_character_count(key));
                let n = match counted.await {
                    Ok(Ok(n)) => n,
                    _ => 0,
                };
                lock(&self.bound_count).insert(key.clone(), n);
                n
            }
        };
        if count >= self.limits.max_characters {
            return Binding::Full;
        }
        lock(&self.bound_count).insert(key.clone(), count + 1);
        lock(&self.bindings).insert(character.to_owned(), key.clone());
        lock(&self.unstored).push((character.to_owned(), key.clone()));
        self.stored.notify_one();
        Binding::Ours
    }

    /// Changes whenever a character moves to another key or is freed.
    pub(crate) fn binding_epoch(&self) -> u64 {
        self.binding_epoch.load(Ordering::Relaxed)
    }

    /// Whether `character` still belongs to `key`, as far as this instance knows (a character
    /// freed and not bound again belongs to nobody: not `key` either).
    pub(crate) fn still_bound(&self, character: &str, key: &Arc<str>) -> bool {
        lock(&self.bindings).get(character) == Some(key)
    }

    fn binding(owner: Arc<str>, key: &Arc<str>) -> Binding {
        if owner == *key {
            Binding::Ours
        } else {
            Binding::Theirs(owner)
        }
    }

    /// Stores the bindings made in memory, in the background, until `stop`; a binding the
    /// database gives to another key is corrected (and the connections of the key that lost it
    /// let the character go). What cannot be stored yet is kept and tried again.
    pub(crate) async fn store_bindings(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.stored.notified() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
            let pending = std::mem::take(&mut *lock(&self.unstored));
            let mut left = Vec::new();
            for (character, key) in pending {
                if !left.is_empty() {
                    left.push((character, key));
                    continue;
                }
                match self.store.bind_on_first_use(&character, &key).await {
                    Ok(owner) if owner == *key => {}
                    Ok(owner) => {
                        tracing::warn!(
                            character,
                            key = %key,
                            owner,
                            "character belongs to another key; that key keeps it"
                        );
                        lock(&self.bindings).insert(character, Arc::from(owner.as_str()));
                        if let Some(n) = lock(&self.bound_count).get_mut(&key) {
                            *n = n.saturating_sub(1);
                        }
                        self.binding_epoch.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::debug!(%err, "could not store a character's key yet; retrying");
                        left.push((character, key));
                    }
                }
            }
            if !left.is_empty() {
                lock(&self.unstored).extend(left);
            }
        }
    }

    /// Whether `key` may report one more rare this minute (counted when it may).
    pub(crate) fn may_report_rare(&self, key: &Arc<str>) -> bool {
        if self.key_rares.is_limited(key) {
            return false;
        }
        self.key_rares.record(key);
        true
    }

    /// Accounts and their roles, by name.
    pub(crate) fn accounts(&self) -> Vec<(String, Role)> {
        let mut out: Vec<(String, Role)> = self
            .snapshot()
            .accounts
            .iter()
            .map(|(n, a)| (n.clone(), a.role))
            .collect();
        out.sort();
        out
    }
}
