//! Secrets as the tracker handles them: passwords hashed with argon2id (memory-hard, salted),
//! and tokens and plugin keys generated with 256 bits of entropy and kept only as their SHA-256
//! (a fast hash is enough for a value nobody can guess; it makes lookups constant work).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("could not hash the password: {0}")]
pub(crate) struct HashError(String);

/// The argon2id PHC string of `password` (a fresh random salt each time).
pub(crate) fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a hash that does not parse).
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new random secret: `prefix` and 43 URL-safe characters (256 bits).
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source at all: refuse to hand out a guessable secret.
        tracing::error!("the system has no random source; no secret can be generated");
        return String::new();
    }
    format!("{prefix}{}", base64url(&bytes))
}

/// The SHA-256 of a token or key, as stored and looked up (lowercase hex).
pub(crate) fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// URL-safe base64 without padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsE", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(
            hash,
            hash_password("correct horse").expect("hash"),
            "salted"
        );
    }

    #[test]
    fn secrets_are_long_random_and_hashed_stably() {
        let a = new_secret("dk_");
        let b = new_secret("dk_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 43, "{a}");
        assert!(
            a[3..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_eq!(secret_hash(&a).len(), 64);
        assert_eq!(base64url(b"\xff\xff\xff"), "____");
        assert_eq!(base64url(b"ab"), "YWI");
    }
}
