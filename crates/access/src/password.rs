//! Passwords: argon2id hashes in PHC string form (`$argon2id$v=19$m=19456,t=2,p=1$…`, the
//! `argon2` crate's defaults, which are OWASP's recommendation), and random passwords for new
//! accounts.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};

/// Shortest password a user may choose.
pub const MIN_LENGTH: usize = 10;

/// Longest password accepted (hashing cost grows with length; nobody types more).
pub const MAX_LENGTH: usize = 1024;

/// Why a password was not hashed or not accepted as a new password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Shorter than [`MIN_LENGTH`] characters.
    #[error("a password has at least {MIN_LENGTH} characters")]
    TooShort,
    /// Longer than [`MAX_LENGTH`] bytes.
    #[error("a password has at most {MAX_LENGTH} bytes")]
    TooLong,
    /// The hashing failed (not expected with the default parameters).
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

/// The argon2id hash of a new password, after checking its length.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LENGTH {
        return Err(PasswordError::TooLong);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` matches `stored` (a PHC string); `false` for anything that is not one.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A random password of 20 characters from an alphabet without look-alikes (about 112 bits).
pub fn random() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        // Rejection sampling: no bias toward the first letters.
        let limit = 256 - 256 % ALPHABET.len();
        if usize::from(byte[0]) < limit {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(!verify("", ""));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash("correct horse battery").unwrap());
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(
            hash(&"x".repeat(MAX_LENGTH + 1)),
            Err(PasswordError::TooLong)
        );
        assert!(!verify(&"x".repeat(MAX_LENGTH + 1), &h));
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random();
        assert_eq!(a.len(), 20);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() && !b"lIO01".contains(&b)));
        assert_ne!(a, random());
        assert!(hash(&a).is_ok());
    }
}
