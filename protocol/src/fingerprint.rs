//! A server certificate's fingerprint: what clients pin, shown as `SHA256:<64 hex digits>`.

use std::{fmt, str::FromStr};

/// SHA-256 of a certificate's DER bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// Whether two fingerprints are equal, in time independent of where they differ.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256:")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a certificate fingerprint (expected SHA256: and 64 hex digits): {0:?}")]
pub struct FingerprintError(pub String);

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    /// Parses `SHA256:<64 hex digits>` (upper or lower case; the prefix may be omitted).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || FingerprintError(text.chars().take(80).collect());
        let trimmed = text.trim();
        let hex = trimmed
            .strip_prefix("SHA256:")
            .or_else(|| trimmed.strip_prefix("sha256:"))
            .unwrap_or(trimmed);
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_and_parse_back() {
        let fingerprint = Fingerprint::of_certificate(b"not really a certificate");
        let shown = fingerprint.to_string();
        assert!(
            shown.starts_with("SHA256:") && shown.len() == 7 + 64,
            "{shown}"
        );
        assert_eq!(shown.parse::<Fingerprint>(), Ok(fingerprint));
        assert_eq!(
            shown
                .to_uppercase()
                .replace("SHA256:", "")
                .parse::<Fingerprint>(),
            Ok(fingerprint)
        );
        assert!("SHA256:abc".parse::<Fingerprint>().is_err());
        assert!(format!("SHA256:{}", "g".repeat(64))
            .parse::<Fingerprint>()
            .is_err());
        assert!(fingerprint.matches(&fingerprint));
        assert!(!fingerprint.matches(&Fingerprint([0; 32])));
    }
}
