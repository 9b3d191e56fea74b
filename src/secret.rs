//! [`Secret`]: a secret string (plugin secret, command token, database password) that never
//! shows in `Debug` output, so logging a value that holds one cannot leak it.

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret string whose `Debug` output never shows its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only the authentication code should call this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, compared without leaking through timing how many
    /// leading bytes matched.
    pub fn matches(&self, presented: &str) -> bool {
        matches(presented, &self.0)
    }
}

/// Compares a presented secret with an expected one in constant time (for their lengths).
pub fn matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    /// Parses a secret that must be given (an empty value is an error).
    pub fn required(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a secret must not be empty".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether the value is empty (an optional setting given as `VAR=`, which means "not set").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Any value, the empty one included: for optional secrets, where an empty value (as compose and
/// `.env` files produce for `VAR=`) means "not set" (see `config::Settings::normalize`).
impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        let secret = Secret::new("abc");
        assert!(secret.matches("abc"));
        assert!(!secret.matches("abd"));
        assert!(!secret.matches("ab"));
        assert!(!secret.matches(""));
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }
}
