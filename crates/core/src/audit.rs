//! Keyed hashes for logs: an account appears in the audit log as an HMAC of its
//! normalised name, so log readers can correlate attempts without learning it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// HMAC-SHA256 keyed by the session secret, domain-separated per use.
#[derive(Clone)]
pub struct AccountHasher {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for AccountHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountHasher")
    }
}

impl AccountHasher {
    pub fn new(secret: &SecretString) -> Self {
        let mut key = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        key.update(b"ferrygate account-hash v1\0");
        Self { key }
    }

    /// The account as it is counted and logged: trimmed, lower-cased.
    pub fn normalise(account: &str) -> String {
        account.trim().to_lowercase()
    }

    /// 16 hex characters identifying the normalised account.
    pub fn hash(&self, account: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(Self::normalise(account).as_bytes());
        let digest = mac.finalize().into_bytes();
        crate::session::hex(&digest[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_account_same_hash_and_no_plaintext() {
        let h = AccountHasher::new(&SecretString::from("k".repeat(32)));
        assert_eq!(h.hash(" Alice@X.example "), h.hash("alice@x.example"));
        assert_ne!(h.hash("alice@x.example"), h.hash("bob@x.example"));
        assert!(!h.hash("alice@x.example").contains("alice"));
        let other = AccountHasher::new(&SecretString::from("j".repeat(32)));
        assert_ne!(h.hash("alice@x.example"), other.hash("alice@x.example"));
    }
}
