//! The session manager: sessions created, found (for one site), renewed and
//! ended in the store, under keys the store cannot turn back into cookies.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::cookie::{Carried, CookieCodec, CookieError};
use super::{Mark, Session, SessionId, SessionStore, StoreError, StoreKey};

/// Why a new session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cookie(#[from] CookieError),
}

/// What the cookies are made with (`[sessions]`).
#[derive(Debug, Clone, Copy)]
pub struct CookieSettings<'a> {
    /// Signs the cookies and keys the store (at least 32 bytes).
    pub secret: &'a SecretString,
    pub name: &'a str,
    pub secure: bool,
    /// No session outlives this.
    pub max_ttl: Duration,
}

/// The cookies and the store behind them, configured once.
pub struct SessionManager {
    cookies: CookieCodec,
    store: Arc<dyn SessionStore>,
    store_key: Hmac<Sha256>,
    max_ttl: Duration,
    /// `ferrygate_token_cache_{hits,misses}_total`, made on first use (after
    /// the server installs its recorder), then only incremented.
    hits: OnceLock<metrics::Counter>,
    misses: OnceLock<metrics::Counter>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager").field("cookies", &self.cookies).finish_non_exhaustive()
    }
}

impl SessionManager {
    pub fn new(config: CookieSettings<'_>, store: Arc<dyn SessionStore>) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        // The cookie key is HKDF-derived; the store key is a separate HMAC domain.
        let mut store_key =
            Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        store_key.update(b"ferrygate session-store-key v1\0");
        Self {
            cookies: CookieCodec::new(secret, config.name, config.secure),
            store,
            store_key,
            max_ttl: config.max_ttl,
            hits: OnceLock::new(),
            misses: OnceLock::new(),
        }
    }

    /// The cookie codec.
    pub fn cookies(&self) -> &CookieCodec {
        &self.cookies
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Counts a lookup as a token-cache hit or miss.
    fn count(&self, hit: bool) {
        let counter = if hit {
            self.hits.get_or_init(|| metrics::counter!("ferrygate_token_cache_hits_total"))
        } else {
            self.misses.get_or_init(|| metrics::counter!("ferrygate_token_cache_misses_total"))
        };
        counter.increment(1);
    }

    pub fn store_key(&self, id: &SessionId) -> StoreKey {
        self.keyed(&[id.0.as_bytes()])
    }

    /// A store key: the HMAC of `parts`, one after another, under the store key.
    /// Each kind of key other than a session's starts with a domain of its own.
    pub(super) fn keyed(&self, parts: &[&[u8]]) -> StoreKey {
        let mut mac = self.store_key.clone();
        for part in parts {
            mac.update(part);
        }
        StoreKey(mac.finalize().into_bytes().into())
    }

    /// The live session of the request's session cookie on `site`, with its
    /// id. A session created on another site is none here (a session belongs
    /// to the site it was created on).
    pub async fn lookup(&self, carried: &Carried, site: &str) -> Result<Option<(SessionId, Session)>, StoreError> {
        let Some(id) = self.cookies.session_id(carried) else {
            self.count(false);
            return Ok(None);
        };
        let found = self.store.get(&self.store_key(&id)).await?.filter(|s| s.is_live_on(site));
        self.count(found.is_some());
        Ok(found.map(|s| (id, s)))
    }

    /// The session stored under `id` now (another request may have renewed it).
    pub async fn reread(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.store.get(&self.store_key(id)).await
    }

    /// Writes `session` back under `id`, for the rest of its lifetime, only
    /// while it is stored: `false` when it ended meanwhile (and stays ended).
    pub async fn replace(&self, id: &SessionId, session: &Session) -> Result<bool, StoreError> {
        self.store.update(&self.store_key(id), session, session.remaining().min(self.max_ttl)).await
    }

    /// The key that claims the renewal of `id`'s access token with
    /// `refresh_token`: an HMAC in a domain of its own, holding neither.
    pub(crate) fn renewal_claim(&self, id: &SessionId, refresh_token: &str) -> StoreKey {
        self.keyed(&[b"\0refresh\0", id.0.as_bytes(), b"\0", refresh_token.as_bytes()])
    }

    /// Claims a renewal (see [`renewal_claim`](Self::renewal_claim)) for
    /// `ttl`: `true` for exactly one caller across every replica sharing the store.
    pub(crate) async fn claim_renewal(&self, claim: &StoreKey, ttl: Duration) -> Result<bool, StoreError> {
        self.store.use_once(Mark::Renewal, claim, ttl).await
    }

    /// Gives a claim back once the renewal's outcome is written, so the next
    /// request may renew again at once.
    pub(crate) async fn release_renewal(&self, claim: &StoreKey) -> Result<(), StoreError> {
        self.store.release(Mark::Renewal, claim).await
    }

    /// Stores `session` under a NEW id (removing `previous`, if any: no
    /// fixation) and returns the `Set-Cookie` value. `persistent` gives the
    /// cookie a Max-Age equal to the session's lifetime; otherwise it ends
    /// with the browser session.
    pub async fn create(
        &self,
        session: &Session,
        previous: Option<&SessionId>,
        persistent: bool,
    ) -> Result<HeaderValue, CreateError> {
        let ttl = session.remaining().min(self.max_ttl);
        let id = SessionId::random();
        self.store.insert(&self.store_key(&id), session, ttl).await?;
        if let Some(old) = previous {
            if let Err(e) = self.store.remove(&self.store_key(old)).await {
                tracing::warn!(error = %e, "could not remove the previous session");
            }
        }
        Ok(self.cookies.session_cookie(&id, persistent.then_some(ttl))?)
    }

    /// Ends the session `id` in the store.
    pub async fn end(&self, id: &SessionId) -> Result<(), StoreError> {
        self.store.remove(&self.store_key(id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{new_state, now_ms, MemoryStore, StateRefused};
    use http::header::COOKIE;
    use http::HeaderMap;

    fn manager() -> SessionManager {
        let secret = SecretString::from("k".repeat(40));
        let settings = CookieSettings { secret: &secret, name: "fg", secure: true, max_ttl: Duration::from_secs(3600) };
        SessionManager::new(settings, Arc::new(MemoryStore::new(100)))
    }

    fn session(ttl: Duration) -> Session {
        Session { token: Some("tok".into()), token_type: "bearer".into(), ..Session::for_test("a@b.example", ttl) }
    }

    /// What a browser sends back for `set_cookie` (next to a cookie of the site's).
    fn sent(m: &SessionManager, set_cookie: &HeaderValue) -> Carried {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        carried(m, &format!("other=1; {pair}"))
    }

    fn carried(m: &SessionManager, cookie: &str) -> Carried {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        m.cookies().take(&mut h).unwrap()
    }

    #[tokio::test]
    async fn a_signed_cookie_finds_its_session_and_a_tampered_one_does_not() {
        let m = manager();
        let set = m.create(&session(Duration::from_secs(60)), None, false).await.unwrap();
        let (_, found) = m.lookup(&sent(&m, &set), "s").await.unwrap().unwrap();
        assert_eq!(found.user, "a@b.example");

        // Flip one character of the signed value.
        let text = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let last = text.chars().last().unwrap();
        let flipped = format!("{}{}", &text[..text.len() - 1], if last == '0' { '1' } else { '0' });
        assert!(m.lookup(&carried(&m, &flipped), "s").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_remembered_cookie_lasts_its_session_rounded_up_to_the_second() {
        let m = manager();
        let max_age = |set: HeaderValue| {
            let attrs = set.to_str().unwrap().to_owned();
            let value = attrs.split("Max-Age=").nth(1).unwrap_or_else(|| panic!("{attrs}"));
            value.split(';').next().unwrap().parse::<u64>().unwrap()
        };
        // Under a second left (a session capped by max_ttl, created a moment
        // later): Max-Age=0 would delete the cookie at once.
        assert_eq!(max_age(m.create(&session(Duration::from_millis(900)), None, true).await.unwrap()), 1);
        let minute = max_age(m.create(&session(Duration::from_secs(60)), None, true).await.unwrap());
        assert!(minute == 60 || minute == 59, "{minute}");
        // max_ttl caps it.
        assert_eq!(max_age(m.create(&session(Duration::from_secs(7200)), None, true).await.unwrap()), 3600);
    }

    #[tokio::test]
    async fn a_session_counts_only_on_the_site_it_was_created_on() {
        let m = manager();
        let cookie = sent(&m, &m.create(&session(Duration::from_secs(60)), None, false).await.unwrap());
        assert!(m.lookup(&cookie, "s").await.unwrap().is_some());
        assert!(m.lookup(&cookie, "other").await.unwrap().is_none(), "a session of site s counted on another site");
        // An entry written before sessions were bound to a site counts nowhere.
        let unbound = Session { site: String::new(), ..session(Duration::from_secs(60)) };
        let cookie = sent(&m, &m.create(&unbound, None, false).await.unwrap());
        assert!(m.lookup(&cookie, "s").await.unwrap().is_none());
        assert!(m.lookup(&cookie, "").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_new_login_replaces_the_old_session() {
        let m = manager();
        let first = sent(&m, &m.create(&session(Duration::from_secs(60)), None, true).await.unwrap());
        let (old_id, _) = m.lookup(&first, "s").await.unwrap().unwrap();
        let second = sent(&m, &m.create(&session(Duration::from_secs(60)), Some(&old_id), true).await.unwrap());
        assert!(m.lookup(&first, "s").await.unwrap().is_none(), "the old session must be gone");
        let (new_id, _) = m.lookup(&second, "s").await.unwrap().unwrap();
        assert_ne!(old_id, new_id);
    }

    #[tokio::test]
    async fn expired_sessions_are_never_served() {
        let m = manager();
        let mut s = session(Duration::from_secs(60));
        s.expires_at_ms = now_ms() - 1;
        let key = StoreKey([7; 32]);
        m.store().insert(&key, &s, Duration::from_secs(60)).await.unwrap();
        let got = m.store().get(&key).await.unwrap();
        assert!(got.is_none(), "an entry past its own expiry must not be served");
    }

    #[tokio::test]
    async fn a_state_is_checked_against_its_cookie_and_used_once() {
        let m = manager();
        let state = new_state();
        assert_eq!(state.len(), 32);
        let cookie = sent(&m, &m.state_cookie(&state, "/my-portal/x?a=1&b=2"));
        assert_eq!(m.take_state(&cookie, None).await, Err(StateRefused::Missing));
        assert_eq!(m.take_state(&cookie, Some(&new_state())).await, Err(StateRefused::Mismatch));
        assert_eq!(m.take_state(&Carried::default(), Some(&state)).await, Err(StateRefused::Missing));
        assert_eq!(m.take_state(&cookie, Some(&state)).await.as_deref(), Ok("/my-portal/x?a=1&b=2"));
        assert_eq!(m.take_state(&cookie, Some(&state)).await, Err(StateRefused::Replayed));
        assert!(m.cookies().expired_state_cookie().to_str().unwrap().starts_with("fg_state=;"));
    }

    proptest::proptest! {
        #[test]
        fn no_unsigned_cookie_is_ever_a_session_or_a_state(value in "[ -~]{0,200}") {
            let m = manager();
            if let Ok(v) = HeaderValue::from_str(&format!("fg={value}; fg_state={value}")) {
                let mut h = HeaderMap::new();
                h.insert(COOKIE, v);
                let carried = m.cookies().take(&mut h).unwrap();
                proptest::prop_assert!(m.cookies().session_id(&carried).is_none());
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                proptest::prop_assert!(rt.block_on(m.take_state(&carried, Some(&value))).is_err());
            }
        }
    }

    #[test]
    fn debug_hides_the_token_and_ids() {
        let s = Session { token: Some("portal-token-7f3a".into()), ..session(Duration::from_secs(1)) };
        assert!(!format!("{s:?}").contains("portal-token-7f3a"), "{s:?}");
        let id = SessionId::random();
        assert!(!format!("{id:?}").contains(&id.0), "{id:?}");
    }
}
