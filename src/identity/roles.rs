//! Roles and who a request or socket stands for.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What someone may do: each role may do everything the ones below it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the map, the live data, history and statistics.
    Viewer,
    /// Also sends commands to plugins.
    Commander,
    /// Also manages accounts, tokens and keys, and reads the audit trail.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Commander => "commander",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Self::Viewer),
            "commander" => Ok(Self::Commander),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "`{other}` is not a role: viewer, commander or admin"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a principal was identified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Via {
    /// A signed-in browser session (its token's hash).
    Session(Arc<str>),
    /// An API token.
    Token,
    /// A user header from a trusted authenticating proxy.
    Proxy,
}

impl Via {
    /// As the audit trail says it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Session(_) => "account",
            Self::Token => "token",
            Self::Proxy => "proxy",
        }
    }
}

/// Someone identified: an account (signed in, or named by a trusted proxy) or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub name: Arc<str>,
    pub role: Role,
    pub via: Via,
}

impl Principal {
    /// Whether it may do what `role` may.
    pub(crate) fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Admin > Role::Commander && Role::Commander > Role::Viewer);
        assert_eq!("Commander".parse::<Role>(), Ok(Role::Commander));
        assert!("root".parse::<Role>().is_err());
        let p = Principal {
            name: Arc::from("ann"),
            role: Role::Commander,
            via: Via::Token,
        };
        assert!(p.can(Role::Viewer) && p.can(Role::Commander) && !p.can(Role::Admin));
    }
}
