//! The session and state cookies, and the store behind them: signing and
//! verifying cookies, keyed store keys, creating, finding (for one site) and
//! ending sessions, and single-use OAuth2 states.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cookie::{Cookie, CookieJar, Key, SameSite};
use hmac::{Hmac, Mac};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{Session, SessionId, SessionStore, StateRefused, StoreError, StoreKey, STATE_TTL};

/// Which of Ferrygate's cookies a request carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OurCookies {
    pub session: bool,
    pub state: bool,
}

impl OurCookies {
    pub fn any(self) -> bool {
        self.session || self.state
    }
}

enum Ours {
    Session,
    State,
}

/// The name of one `name=value` pair of a `Cookie` header.
fn cookie_name(pair: &[u8]) -> &[u8] {
    let pair = pair.trim_ascii_start();
    pair.iter().position(|&b| b == b'=').map_or(pair, |i| pair[..i].trim_ascii_end())
}

/// Cookie handling and store access, configured once.
pub struct SessionManager {
    store: Arc<dyn SessionStore>,
    cookie_key: Key,
    store_key: Hmac<Sha256>,
    cookie_name: String,
    /// `{cookie_name}_state`: the OAuth2 state cookie.
    state_cookie_name: String,
    secure: bool,
    max_ttl: Duration,
    /// `ferrygate_token_cache_{hits,misses}_total`, made on first use (after
    /// the server installs its recorder), then only incremented.
    hits: OnceLock<metrics::Counter>,
    misses: OnceLock<metrics::Counter>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager").field("cookie_name", &self.cookie_name).finish_non_exhaustive()
    }
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

impl SessionManager {
    pub fn new(config: CookieSettings<'_>, store: Arc<dyn SessionStore>) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        // HKDF inside `derive_from`; the store key below is a separate HMAC domain.
        let cookie_key = Key::derive_from(secret);
        let mut store_key =
            Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        store_key.update(b"ferrygate session-store-key v1\0");
        Self {
            store,
            cookie_key,
            store_key,
            cookie_name: config.name.to_owned(),
            state_cookie_name: format!("{}_state", config.name),
            secure: config.secure,
            max_ttl: config.max_ttl,
            hits: OnceLock::new(),
            misses: OnceLock::new(),
        }
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

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Which of our cookies the request carries (a cheap scan, no crypto).
    #[inline]
    pub fn our_cookies(&self, headers: &HeaderMap) -> OurCookies {
        let mut found = OurCookies::default();
        for value in headers.get_all(COOKIE) {
            for pair in value.as_bytes().split(|&b| b == b';') {
                match self.ours(cookie_name(pair)) {
                    Some(Ours::Session) => found.session = true,
                    Some(Ours::State) => found.state = true,
                    None => {}
                }
            }
        }
        found
    }

    /// Whether the request carries our session cookie at all.
    #[inline]
    pub fn has_cookie(&self, headers: &HeaderMap) -> bool {
        self.our_cookies(headers).session
    }

    fn ours(&self, name: &[u8]) -> Option<Ours> {
        if name == self.cookie_name.as_bytes() {
            Some(Ours::Session)
        } else if name == self.state_cookie_name.as_bytes() {
            Some(Ours::State)
        } else {
            None
        }
    }

    /// Removes our cookies (session and state) from a request: the site never
    /// sees a session id or a state. Other cookies are kept, in order.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        if !self.our_cookies(headers).any() {
            return;
        }
        let mut kept: Vec<u8> = Vec::new();
        for value in headers.get_all(COOKIE) {
            for pair in value.as_bytes().split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                if pair.is_empty() || self.ours(cookie_name(pair)).is_some() {
                    continue;
                }
                if !kept.is_empty() {
                    kept.extend_from_slice(b"; ");
                }
                kept.extend_from_slice(pair);
            }
        }
        headers.remove(COOKIE);
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            if !kept.is_empty() {
                headers.insert(COOKIE, v);
            }
        }
    }

    /// The session id of a correctly signed cookie; a forged, tampered or
    /// malformed cookie is simply no session.
    pub fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        for value in headers.get_all(COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for cookie in Cookie::split_parse(value).flatten() {
                if cookie.name() != self.cookie_name {
                    continue;
                }
                let mut jar = CookieJar::new();
                jar.add_original(cookie.into_owned());
                if let Some(verified) = jar.signed(&self.cookie_key).get(&self.cookie_name) {
                    let id = verified.value();
                    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Some(SessionId(id.to_owned()));
                    }
                }
            }
        }
        None
    }

    pub fn store_key(&self, id: &SessionId) -> StoreKey {
        self.keyed(&[id.0.as_bytes()])
    }

    /// A store key: the HMAC of `parts`, one after another, under the store key.
    /// Each kind of key other than a session's starts with a domain of its own.
    fn keyed(&self, parts: &[&[u8]]) -> StoreKey {
        let mut mac = self.store_key.clone();
        for part in parts {
            mac.update(part);
        }
        StoreKey(mac.finalize().into_bytes().into())
    }

    /// The key a used state is recorded under: an HMAC of the state in a
    /// domain of its own (never equal to a session's key).
    fn state_key(&self, state: &str) -> StoreKey {
        self.keyed(&[b"\0used-state\0", state.as_bytes()])
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
    pub(crate) fn refresh_claim(&self, id: &SessionId, refresh_token: &str) -> StoreKey {
        self.keyed(&[b"\0refresh\0", id.0.as_bytes(), b"\0", refresh_token.as_bytes()])
    }

    /// Claims a renewal (see [`refresh_claim`](Self::refresh_claim)) for
    /// `ttl`: `true` for exactly one caller across every replica sharing the store.
    pub(crate) async fn claim_refresh(&self, claim: &StoreKey, ttl: Duration) -> Result<bool, StoreError> {
        self.store.use_once(claim, ttl).await
    }

    /// Gives a claim back once the renewal's outcome is written, so the next
    /// request may renew again at once.
    pub(crate) async fn release_refresh(&self, claim: &StoreKey) -> Result<(), StoreError> {
        self.store.release(claim).await
    }

    /// The live session of the request's cookie on `site`, with its id. A
    /// session created on another site is none here (a session belongs to
    /// the site it was created on).
    pub async fn lookup(&self, headers: &HeaderMap, site: &str) -> Result<Option<(SessionId, Session)>, StoreError> {
        let Some(id) = self.session_id(headers) else {
            self.count(false);
            return Ok(None);
        };
        let found = self.store.get(&self.store_key(&id)).await?.filter(|s| s.is_live_on(site));
        self.count(found.is_some());
        Ok(found.map(|s| (id, s)))
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
    ) -> Result<HeaderValue, StoreError> {
        let ttl = session.remaining().min(self.max_ttl);
        let id = SessionId::random();
        self.store.insert(&self.store_key(&id), session, ttl).await?;
        if let Some(old) = previous {
            if let Err(e) = self.store.remove(&self.store_key(old)).await {
                tracing::warn!(error = %e, "could not remove the previous session");
            }
        }
        let mut cookie = self.cookie(id.0);
        if persistent {
            // Whole seconds, rounded up: a session with 0.9 s left must not get
            // `Max-Age=0`, which deletes the cookie (the store ends the session on time).
            let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            cookie.set_max_age(cookie::time::Duration::seconds(secs as i64));
        }
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.cookie_key).add(cookie);
        let signed = jar.delta().next().map(|c| c.to_string()).unwrap_or_default();
        HeaderValue::from_str(&signed).map_err(|e| StoreError(format!("cookie: {e}")))
    }

    /// Ends the session `id` in the store.
    pub async fn end(&self, id: &SessionId) -> Result<(), StoreError> {
        self.store.remove(&self.store_key(id)).await
    }

    /// A `Set-Cookie` value that removes the cookie from the browser.
    pub fn expired_cookie(&self) -> HeaderValue {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| unreachable!("cookie names are checked at load"))
    }

    /// A signed, short-lived cookie binding `state` (and the destination it
    /// carries) to this browser.
    pub fn state_cookie(&self, state: &str, destination: &str) -> HeaderValue {
        let value = format!("{state}.{}", crate::query::component(destination));
        let mut cookie = self.cookie(value);
        cookie.set_name(self.state_cookie_name.clone());
        cookie.set_max_age(cookie::time::Duration::seconds(STATE_TTL.as_secs() as i64));
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.cookie_key).add(cookie);
        let signed = jar.delta().next().map(|c| c.to_string()).unwrap_or_default();
        HeaderValue::from_str(&signed).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Checks a callback's `state` against the browser's state cookie and
    /// consumes it in the store (single use, across replicas when the store is
    /// shared): the destination it was bound to, or why it is refused.
    pub async fn take_state(&self, headers: &HeaderMap, offered: Option<&str>) -> Result<String, StateRefused> {
        let offered = offered.filter(|s| !s.is_empty()).ok_or(StateRefused::Missing)?;
        let name = &self.state_cookie_name;
        let bound = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| Cookie::split_parse(v).flatten())
            .filter(|c| c.name() == name.as_str())
            .find_map(|c| {
                let mut jar = CookieJar::new();
                jar.add_original(c.into_owned());
                jar.signed(&self.cookie_key).get(name).map(|c| c.value().to_owned())
            })
            .ok_or(StateRefused::Missing)?;
        let (state, destination) = bound.split_once('.').ok_or(StateRefused::Mismatch)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(state.as_bytes(), offered.as_bytes())) {
            return Err(StateRefused::Mismatch);
        }
        let key = self.state_key(state);
        match self.store.use_once(&key, STATE_TTL).await {
            Ok(true) => {}
            Ok(false) => return Err(StateRefused::Replayed),
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a used state");
                return Err(StateRefused::StoreUnavailable);
            }
        }
        let destination = percent_encoding::percent_decode_str(destination).decode_utf8_lossy().into_owned();
        Ok(destination)
    }

    /// A `Set-Cookie` value that removes the state cookie.
    pub fn clear_state_cookie(&self) -> HeaderValue {
        let mut cookie = self.cookie(String::new());
        cookie.set_name(self.state_cookie_name.clone());
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| unreachable!("cookie names are checked at load"))
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        Cookie::build((self.cookie_name.clone(), value))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{new_state, now_ms, MemoryStore};

    fn manager() -> SessionManager {
        let secret = SecretString::from("k".repeat(40));
        let settings = CookieSettings { secret: &secret, name: "fg", secure: true, max_ttl: Duration::from_secs(3600) };
        SessionManager::new(settings, Arc::new(MemoryStore::new(100)))
    }

    fn session(ttl: Duration) -> Session {
        Session { token: Some("tok".into()), token_type: "bearer".into(), ..Session::for_test("a@b.example", ttl) }
    }

    fn cookie_header(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        h
    }

    #[tokio::test]
    async fn a_signed_cookie_finds_its_session_and_a_tampered_one_does_not() {
        let m = manager();
        let set = m.create(&session(Duration::from_secs(60)), None, false).await.unwrap();
        let attrs = set.to_str().unwrap();
        assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax") && attrs.contains("Path=/"), "{attrs}");
        assert!(attrs.contains("Secure") && !attrs.contains("Max-Age"), "{attrs}");
        let headers = cookie_header(&set);
        assert!(m.has_cookie(&headers));
        let (_, found) = m.lookup(&headers, "s").await.unwrap().unwrap();
        assert_eq!(found.user, "a@b.example");

        // Flip one character of the signed value.
        let text = headers[COOKIE].to_str().unwrap().to_owned();
        let last = text.chars().last().unwrap();
        let flipped = format!("{}{}", &text[..text.len() - 1], if last == '0' { '1' } else { '0' });
        let mut forged = HeaderMap::new();
        forged.insert(COOKIE, HeaderValue::from_str(&flipped).unwrap());
        assert!(m.lookup(&forged, "s").await.unwrap().is_none());
        // An unsigned id is refused too.
        let mut bare = HeaderMap::new();
        bare.insert(COOKIE, HeaderValue::from_str(&format!("fg={}", "a".repeat(64))).unwrap());
        assert!(m.session_id(&bare).is_none());
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

    #[test]
    fn our_cookies_are_stripped_and_the_others_kept_in_order() {
        let m = manager();
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; fg=signed; fg_state=s.x"));
        h.append(COOKIE, HeaderValue::from_static("fgx=2;b=3"));
        assert_eq!(m.our_cookies(&h), OurCookies { session: true, state: true });
        m.strip_cookies(&mut h);
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; fgx=2; b=3"]);
        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, HeaderValue::from_static("fg_state=1"));
        assert!(!m.our_cookies(&only_ours).session);
        m.strip_cookies(&mut only_ours);
        assert!(only_ours.get(COOKIE).is_none());
    }

    #[tokio::test]
    async fn a_session_counts_only_on_the_site_it_was_created_on() {
        let m = manager();
        let headers = cookie_header(&m.create(&session(Duration::from_secs(60)), None, false).await.unwrap());
        assert!(m.lookup(&headers, "s").await.unwrap().is_some());
        assert!(m.lookup(&headers, "other").await.unwrap().is_none(), "a session of site s counted on another site");
        // An entry written before sessions were bound to a site counts nowhere.
        let unbound = Session { site: String::new(), ..session(Duration::from_secs(60)) };
        let headers = cookie_header(&m.create(&unbound, None, false).await.unwrap());
        assert!(m.lookup(&headers, "s").await.unwrap().is_none());
        assert!(m.lookup(&headers, "").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_new_login_replaces_the_old_session() {
        let m = manager();
        let first = cookie_header(&m.create(&session(Duration::from_secs(60)), None, true).await.unwrap());
        let (old_id, _) = m.lookup(&first, "s").await.unwrap().unwrap();
        let second = cookie_header(&m.create(&session(Duration::from_secs(60)), Some(&old_id), true).await.unwrap());
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
        let headers = cookie_header(&m.state_cookie(&state, "/my-portal/x?a=1&b=2"));
        assert_eq!(m.take_state(&headers, None).await, Err(StateRefused::Missing));
        assert_eq!(m.take_state(&headers, Some(&new_state())).await, Err(StateRefused::Mismatch));
        assert_eq!(m.take_state(&HeaderMap::new(), Some(&state)).await, Err(StateRefused::Missing));
        assert_eq!(m.take_state(&headers, Some(&state)).await.as_deref(), Ok("/my-portal/x?a=1&b=2"));
        assert_eq!(m.take_state(&headers, Some(&state)).await, Err(StateRefused::Replayed));
        assert!(m.clear_state_cookie().to_str().unwrap().starts_with("fg_state=;"));
    }

    proptest::proptest! {
        #[test]
        fn no_unsigned_cookie_is_ever_a_session_or_a_state(value in "[ -~]{0,200}") {
            let m = manager();
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("fg={value}; fg_state={value}")) {
                h.insert(COOKIE, v);
                proptest::prop_assert!(m.session_id(&h).is_none());
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                proptest::prop_assert!(rt.block_on(m.take_state(&h, Some(&value))).is_err());
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
