//! Sessions: the signed cookie, the store trait, and what a session holds.
//!
//! The cookie carries an opaque random id (256 bits) signed with a key derived
//! from `sessions.secret`. Stores never see that id: they are keyed by
//! [`StoreKey`], an HMAC of the id under a separate, domain-separated key, so
//! neither a store key nor a stored value can be turned back into a cookie.

mod cookie;
mod manager;
mod memory;
mod state;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use cookie::{Carried, CookieCodec, CookieError};
pub use manager::{CookieSettings, CreateError, SessionManager};
pub use memory::MemoryStore;
pub use state::{new_state, StateRefused, STATE_TTL};

use crate::error::{BoxError, BoxFuture};

/// What the gateway remembers of a signed-in user. Field names are short: this
/// is serialized into Redis.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The site (`sites.name`) the session was created on: on any other site it
    /// is no session. Entries written before sessions were bound to a site
    /// have none (empty), and so count nowhere.
    #[serde(rename = "s", default)]
    pub site: String,
    /// The provider's name in `[providers]`.
    #[serde(rename = "p")]
    pub provider: String,
    /// The account as the user typed it (trimmed).
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The user's groups (from `ldap`, `oidc`, `rest`'s directory), for
    /// authorization rules and `X-Ferrygate-Groups`.
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The provider's access token, for returning users (token providers).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "y", default)]
    pub token_type: String,
    /// The provider's refresh token (`oidc` with `refresh = true`): the
    /// session then outlives its access token, which is renewed with it.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token ends (milliseconds since the epoch), when that is
    /// not when the session ends (a refreshable session).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at_ms: Option<u64>,
    /// When the session (and its token) ends, in milliseconds since the epoch:
    /// wall-clock time, so replicas sharing a store agree.
    #[serde(rename = "e")]
    pub expires_at_ms: u64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("site", &self.site)
            .field("provider", &self.provider)
            .field("user_id", &self.user_id)
            .field("org_id", &self.org_id)
            .field("groups", &self.groups)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("token_expires_at_ms", &self.token_expires_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Time left before the session ends; zero once it has.
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms()))
    }

    pub fn is_live(&self) -> bool {
        self.expires_at_ms > now_ms()
    }

    /// When the access token ends: its own expiry, else the session's.
    pub fn token_expires_at_ms(&self) -> u64 {
        self.token_expires_at_ms.unwrap_or(self.expires_at_ms)
    }

    /// Whether this session counts on `site`: it was created there and lives.
    pub fn is_live_on(&self, site: &str) -> bool {
        !self.site.is_empty() && self.site == site && self.is_live()
    }
}

#[cfg(test)]
impl Session {
    /// A live session of `user` on site `s` (provider `p`) for `ttl`, and no
    /// more: tests set what they look at.
    pub(crate) fn for_test(user: &str, ttl: Duration) -> Self {
        Self {
            site: "s".into(),
            provider: "p".into(),
            user: user.into(),
            user_id: None,
            org_id: None,
            external_id: None,
            groups: Vec::new(),
            token: None,
            token_type: String::new(),
            refresh_token: None,
            token_expires_at_ms: None,
            expires_at_ms: now_ms() + ttl.as_millis() as u64,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the Unix epoch `d` from now (saturating): when
/// something that lasts `d` ends, in a session's terms.
pub fn ms_from_now(d: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key a store files a session under: HMAC of the session id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey(pub [u8; 32]);

impl StoreKey {
    /// Lower-case hex, for stores that key by string.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

/// The store could not answer (its cause as the error's source).
#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {}", crate::error::Chain(.0.as_ref()))]
pub struct StoreError(#[source] BoxError);

impl StoreError {
    /// The store failed for `cause`.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self(cause.into())
    }
}

/// What a single-use mark is for ([`SessionStore::use_once`]): a store that
/// files them by name files each kind apart (the keys of each are already
/// HMACs in domains of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mark {
    /// An OAuth2 `state` that was used (spec 1.2).
    State,
    /// A claim on a session's token renewal (spec 1.4), given back once written.
    Renewal,
}

impl Mark {
    /// Its name, for stores that file marks by name (`ferrygate:<name>:<key>` in Redis).
    pub fn name(self) -> &'static str {
        match self {
            Mark::State => "used-state",
            Mark::Renewal => "renewal",
        }
    }
}

/// Where sessions live: in memory, or shared (Redis).
pub trait SessionStore: Send + Sync + 'static {
    /// The live session under `key`; an expired one is never returned.
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Session>, StoreError>>;
    /// Stores `session` under `key` for `ttl`.
    fn insert<'a>(
        &'a self,
        key: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Replaces the session under `key` for `ttl`, only while one is stored
    /// there: `false` when it was gone (ended meanwhile, e.g. by a logout on
    /// another replica), which must not bring it back. The default reads,
    /// then writes; a store that can do it in one step should.
    fn update<'a>(
        &'a self,
        key: &'a StoreKey,
        session: &'a Session,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if self.get(key).await?.is_none() {
                return Ok(false);
            }
            self.insert(key, session, ttl).await.map(|()| true)
        })
    }
    /// Removes `key`; removing a missing key is not an error.
    fn remove<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Whether the store answers (readiness).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Marks `key` as used for `ttl`: `true` the first time, `false` while it
    /// is marked (single-use OAuth2 states; a shared store makes them single
    /// use across every replica).
    fn use_once<'a>(&'a self, mark: Mark, key: &'a StoreKey, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Unmarks `key` before its `ttl`, so the next `use_once` is fresh again
    /// (a token renewal's claim, given back once its outcome is written).
    fn release<'a>(&'a self, mark: Mark, key: &'a StoreKey) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Live sessions, when the store can count them cheaply (for `ferrygate_sessions_active`).
    fn active(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async { None })
    }
}

/// A session id as the cookie carries it (256 random bits, hex).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(pub(crate) String);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

impl SessionId {
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex(&bytes))
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
