//! The provider's signing keys (SPEC 1.4): the JWKS fetched on first use,
//! and again when an ID token names a `kid` we lack — at most once a minute
//! ([`JWKS_REFETCH_EVERY`]), so a key rotation needs no restart.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use ferrygate_core::LoginError;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::discovery::Endpoints;
use crate::verify::{self, Claims, IdTokenRefused};
use crate::{now_secs, Failure, Oidc, JWKS_REFETCH_EVERY};

/// The provider's signing keys: read without waiting; fetched by one caller
/// at a time (`fetching`), which also remembers when an unknown `kid` last
/// fetched them.
#[derive(Default)]
pub(crate) struct Keys {
    set: RwLock<Option<Arc<JwkSet>>>,
    fetching: Mutex<Option<Instant>>,
}

/// A JWKS as published: each key that jsonwebtoken can read is kept, the
/// others (algorithms and curves it does not know, e.g. ES512 or Ed448
/// encryption keys) are skipped, so one unusual key cannot stop every login.
#[derive(Deserialize)]
struct PublishedKeys {
    keys: Vec<Value>,
}

/// The keys of a published JWKS that jsonwebtoken can read, and how many it could not.
fn readable(published: PublishedKeys) -> (JwkSet, usize) {
    let total = published.keys.len();
    let keys: Vec<_> = published.keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect();
    let skipped = total - keys.len();
    (JwkSet { keys }, skipped)
}

impl Oidc {
    fn cached_keys(&self) -> Option<Arc<JwkSet>> {
        self.keys.set.read().ok().and_then(|k| k.clone())
    }

    /// The signing keys: fetched on first use, and again when `stale` (a
    /// token named a key we lack) unless an unknown `kid` did so this minute.
    async fn keys(&self, jwks: &str, stale: bool) -> Result<Arc<JwkSet>, LoginError> {
        if let Some(set) = self.cached_keys().filter(|_| !stale) {
            return Ok(set);
        }
        let mut refetched = self.keys.fetching.lock().await;
        let cached = self.cached_keys();
        match (&cached, stale) {
            // Fetched by another caller while this one waited.
            (Some(set), false) => return Ok(set.clone()),
            (Some(set), true) if refetched.is_some_and(|at| at.elapsed() < JWKS_REFETCH_EVERY) => {
                tracing::warn!(provider = %self.name, "an unknown kid, and the keys were fetched again less than a minute ago");
                return Ok(set.clone());
            }
            _ => {}
        }
        let published: PublishedKeys = self.get_json(jwks, "JWKS request").await?;
        let (set, skipped) = readable(published);
        if skipped > 0 {
            tracing::info!(provider = %self.name, skipped, "JWKS keys of unknown types skipped");
        }
        let set = Arc::new(set);
        if stale && cached.is_some() {
            *refetched = Some(Instant::now());
        }
        if let Ok(mut slot) = self.keys.set.write() {
            *slot = Some(set.clone());
        }
        Ok(set)
    }

    /// The claims of a verified ID token; an unknown `kid` re-fetches the keys once.
    pub(crate) async fn verified(&self, endpoints: &Endpoints, token: &str) -> Result<Claims, Failure> {
        let c = &self.config;
        let keys = self.keys(&endpoints.jwks, false).await?;
        match verify::verify(token, &keys, &c.issuer, &c.client_id, now_secs()) {
            Err(IdTokenRefused::UnknownKey(_)) => {
                let keys = self.keys(&endpoints.jwks, true).await?;
                verify::verify(token, &keys, &c.issuer, &c.client_id, now_secs()).map_err(Failure::IdToken)
            }
            other => other.map_err(Failure::IdToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_unknown_types_are_skipped_not_fatal() {
        let published: PublishedKeys = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "EC", "kid": "p521", "crv": "P-521", "alg": "ES512", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "x448", "crv": "X448", "x": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP-512", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "sig", "use": "sig", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
        ]}))
        .unwrap();
        let (set, skipped) = readable(published);
        assert_eq!(set.keys.iter().map(|k| k.common.key_id.as_deref()).collect::<Vec<_>>(), [Some("sig")]);
        assert_eq!(skipped, 3);
    }
}
