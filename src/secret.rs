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
        s.parse()
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
        if unsubstituted(s) {
            // Never echo the value: it might be a real secret that happens to look like this.
            return Err(
                "the value is a `${NAME...}` reference that was never substituted \
                 (a compose implementation that does not support that form, or a quoted \
                 .env line): set the secret itself"
                    .into(),
            );
        }
        Ok(Self(s.to_owned()))
    }
}

/// Whether `s` is a whole `${NAME}`, `${NAME:-...}` or `${NAME:?...}` reference: a secret that
/// reached the tracker as the text of a variable reference, as Debian's podman-compose 1.0.3
/// passes `${VAR:-}` on. Taken as a secret, it would be one anybody reading the compose file
/// knows, and the real one would be refused.
fn unsubstituted(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return false;
    };
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, rest) = inner.split_at(name_end);
    let named = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    named
        && (rest.is_empty()
            || ["-", ":-", "?", ":?", "+", ":+"]
                .iter()
                .any(|op| rest.starts_with(op)))
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

    #[test]
    fn a_variable_reference_that_was_never_substituted_is_refused() {
        for raw in [
            "${SHARED_SECRET:-}",
            "${SHARED_SECRET}",
            "${X:?set X}",
            "${_A-b}",
        ] {
            let err = raw.parse::<Secret>().expect_err(raw);
            assert!(err.contains("never substituted"), "{raw}: {err}");
            assert!(!err.contains(raw), "the error must not echo the value");
            assert!(Secret::required(raw).is_err(), "{raw}");
        }
        // Secrets that merely contain such characters are secrets.
        for fine in [
            "${",
            "a${B}",
            "${B}c",
            "${1A}",
            "${A B}",
            "$SECRET",
            "p@ss${word",
        ] {
            assert_eq!(fine.parse::<Secret>().expect(fine).expose(), fine);
        }
        assert_eq!(
            Secret::required("").expect_err("empty"),
            "a secret must not be empty"
        );
    }
}
