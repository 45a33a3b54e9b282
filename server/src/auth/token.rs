//! Tokens: 256 random bits shown once as hex; only their BLAKE3 is stored. A fast hash is
//! enough for secrets this long (no dictionary to try), and comparing hashes in constant time
//! leaks nothing about how much of a guess was right.

use ring::rand::{SecureRandom, SystemRandom};

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

/// A new random token: 64 lowercase hex digits.
pub fn new_token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// What is stored for a token.
pub fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Whether `token` is the one whose hash is `stored`, in constant time. The token is hashed
/// and compared also when `stored` is not a hash (an unknown user's), against a hash no
/// token has, so the answer takes as long either way.
pub fn token_matches(token: &str, stored: &str) -> bool {
    let (stored, valid) = match blake3::Hash::from_hex(stored) {
        Ok(stored) => (stored, true),
        Err(_) => (blake3::Hash::from_bytes([0; 32]), false),
    };
    // blake3's equality is constant-time.
    let equal = blake3::hash(token.as_bytes()) == stored;
    equal && valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_match_only_their_hash() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(token_matches(&a, &hash_token(&a)));
        assert!(!token_matches(&b, &hash_token(&a)));
        // An unknown user's empty or broken hash matches nothing.
        assert!(!token_matches(&a, ""));
        assert!(!token_matches("", ""));
        assert!(!token_matches(&a, &"0".repeat(64)[..63]));
        assert!(!token_matches(&a, "not hex"));
    }
}
