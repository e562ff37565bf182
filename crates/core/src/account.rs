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

    /// The account as it is counted and logged: Unicode NFKC (fullwidth
    /// and other compatibility forms folded), invisible format characters
    /// (general category Cf: zero-width spaces and joiners, direction marks)
    /// removed, trimmed, lower-cased, and one trailing dot of an email's
    /// domain removed. Spellings a provider treats as one account are one
    /// account to the brute-force limit and the audit log.
    pub fn normalise(account: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        let folded: String = account.nfkc().filter(|&c| !is_format(c)).collect();
        let mut normal = folded.trim().to_lowercase();
        if normal.contains('@') && normal.ends_with('.') {
            normal.pop();
        }
        normal
    }

    /// Whether a typed account holds control or format characters: such a
    /// name is refused (`invalid_input`) before anything is sent.
    pub fn has_invisible(account: &str) -> bool {
        account.chars().any(|c| c.is_control() || is_format(c))
    }

    /// 16 hex characters identifying the normalised account.
    pub fn hash(&self, account: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(Self::normalise(account).as_bytes());
        let digest = mac.finalize().into_bytes();
        crate::session::hex(&digest[..8])
    }
}

/// Unicode general category Cf (format characters).
fn is_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
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

    #[test]
    fn spellings_of_one_account_are_one_account() {
        for spelling in [
            "victim@x.example",
            " Victim@X.example ",
            "victim@x.example\u{200b}",
            "\u{200b}victim@x.example",
            "vic\u{200d}tim@x.example",
            "\u{ff56}ictim@x.example",
            "\u{FF36}ICTIM@x.example",
            "victim@x.example.",
        ] {
            assert_eq!(AccountHasher::normalise(spelling), "victim@x.example", "{spelling:?}");
        }
        assert_eq!(AccountHasher::normalise("alice."), "alice.", "only an email's domain loses its dot");
        assert!(AccountHasher::has_invisible("victim@x\u{200b}"));
        assert!(AccountHasher::has_invisible("victim\u{202e}@x"));
        assert!(AccountHasher::has_invisible("a\tb"));
        assert!(!AccountHasher::has_invisible("\u{ff56}ictim@x.example"));
    }
}
