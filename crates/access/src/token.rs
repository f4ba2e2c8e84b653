//! API tokens: `rpt_` and 43 characters of base64url (32 random bytes). A token's secret has
//! enough entropy that a fast hash is the right one to store (BLAKE3, hex): unlike a password it
//! cannot be guessed from a dictionary, and every API request checks one.

use base64::Engine;
use rand_core::{OsRng, RngCore};

/// What every token starts with (so that secret scanners and people recognise one).
pub const PREFIX: &str = "rpt_";

/// A new token: its secret (shown once) and what is stored.
#[derive(Debug)]
pub struct Issued {
    /// The token as its user passes it (`Authorization: Bearer <secret>`); never stored.
    pub secret: String,
    /// The hash stored in the catalog.
    pub hash: String,
    /// Identifier (shown in lists; not secret).
    pub id: String,
}

/// Draws a new token.
pub fn issue() -> Issued {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    Issued {
        hash: hash(&secret),
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        secret,
    }
}

/// The stored form of a token's secret.
pub fn hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Whether `text` has the form of a token (checked before any lookup).
pub fn looks_like_token(text: &str) -> bool {
    text.len() == PREFIX.len() + 43
        && text.starts_with(PREFIX)
        && text[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_have_the_form_and_their_hash() {
        let t = issue();
        assert!(looks_like_token(&t.secret), "{}", t.secret);
        assert_eq!(t.hash, hash(&t.secret));
        assert_eq!(t.hash.len(), 64);
        assert!(!t.hash.contains(&t.secret[PREFIX.len()..]));
        let u = issue();
        assert_ne!((t.secret, t.id), (u.secret, u.id));
        assert!(!looks_like_token("rpt_short"));
        assert!(!looks_like_token(&format!("rpt_{}", "a/".repeat(21) + "a")));
        assert!(!looks_like_token(&format!("xyz_{}", "a".repeat(43))));
    }
}
