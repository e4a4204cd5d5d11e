//! Join tokens: `SWMTKN-1-<base36 sha256 of the CA certificate, 50 chars>-<secret, 25 chars>`.
//! The digest pins the CA a joining node must see; the secret decides the role.

use crate::util::{base36, random_base36};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "SWMTKN-1-";
pub const DIGEST_LEN: usize = 50;
pub const SECRET_LEN: usize = 25;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_digest: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid join token: it must look like SWMTKN-1-<digest>-<secret>; copy it from `swarmctl cluster join-token worker` on a manager")]
    Format,
}

/// Digest of a CA certificate (DER bytes) in the form embedded in tokens.
pub fn ca_digest(cert_der: &[u8]) -> String {
    base36(&Sha256::digest(cert_der), DIGEST_LEN)
}

impl JoinToken {
    pub fn generate(ca_digest: &str) -> JoinToken {
        JoinToken {
            ca_digest: ca_digest.to_string(),
            secret: random_base36(SECRET_LEN),
        }
    }

    pub fn parse(s: &str) -> Result<JoinToken, TokenError> {
        let rest = s.trim().strip_prefix(PREFIX).ok_or(TokenError::Format)?;
        let (digest, secret) = rest.split_once('-').ok_or(TokenError::Format)?;
        let ok = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        };
        if !ok(digest, DIGEST_LEN) || !ok(secret, SECRET_LEN) {
            return Err(TokenError::Format);
        }
        Ok(JoinToken {
            ca_digest: digest.to_string(),
            secret: secret.to_string(),
        })
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}-{}", self.ca_digest, self.secret)
    }
}

/// Compares two secrets in time independent of where they first differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let t = JoinToken::generate(&ca_digest(b"cert"));
        let s = t.to_string();
        assert!(s.starts_with("SWMTKN-1-"));
        assert_eq!(JoinToken::parse(&s).unwrap(), t);
    }

    #[test]
    fn malformed_tokens_refused() {
        let good = JoinToken::generate(&ca_digest(b"cert")).to_string();
        for bad in [
            "",
            "SWMTKN-1-",
            "SWMTKN-2-abc-def",
            &good[..good.len() - 1],
            &good.replace("SWMTKN", "XXX"),
            &good.to_uppercase(),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::Format), "{bad}");
        }
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "ab"));
    }
}
