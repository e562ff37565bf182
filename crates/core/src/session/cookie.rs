//! The cookie codec: Ferrygate's two cookies (the session and the OAuth2
//! state) read out of a request's `Cookie` header (one scan; a second only
//! to write the header back without them when a request carries them), and the
//! signed `Set-Cookie` values that make and remove them. Pure header code:
//! no store, no I/O.

use std::fmt;
use std::time::Duration;

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::SessionId;

/// Ferrygate's cookies as a request carried them, taken out of its `Cookie`
/// header (the site never sees them). Values are as sent: their signatures
/// are checked when they are read ([`CookieCodec::session_id`],
/// and the state when the callback reads it). Empty for a request without either.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Every value sent under the session cookie's name, in order (a
    /// browser may send two, for two paths or domains).
    session: Vec<String>,
    /// The same for the state cookie.
    state: Vec<String>,
}

impl Carried {
    /// Whether the request carried the session cookie at all (signed or not).
    pub fn has_session(&self) -> bool {
        !self.session.is_empty()
    }

    /// Whether the request carried neither of our cookies.
    pub fn is_empty(&self) -> bool {
        self.session.is_empty() && self.state.is_empty()
    }
}

impl fmt::Debug for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Carried").field("session", &self.session.len()).field("state", &self.state.len()).finish()
    }
}

/// The request's `Cookie` header could not be re-written without our cookies.
#[derive(Debug, thiserror::Error)]
#[error("cookie: {0}")]
pub struct CookieError(#[source] http::header::InvalidHeaderValue);

/// Reads and writes Ferrygate's cookies, configured once from `[sessions]`.
pub struct CookieCodec {
    key: Key,
    name: String,
    /// `{name}_state`: the OAuth2 state cookie.
    state_name: String,
    secure: bool,
}

impl fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieCodec").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every `name=value` pair of a request's `Cookie` headers: its name, its
/// value and the whole pair, trimmed.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
    headers.get_all(COOKIE).into_iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).map(|pair| {
        let (name, value) = split_pair(pair);
        (name, value, pair.trim_ascii())
    })
}

/// The name and value of one `name=value` pair of a `Cookie` header, trimmed.
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    let pair = pair.trim_ascii();
    match pair.iter().position(|&b| b == b'=') {
        Some(i) => (pair[..i].trim_ascii_end(), pair[i + 1..].trim_ascii_start()),
        None => (pair, &[]),
    }
}

impl CookieCodec {
    /// `secret` signs the cookies (HKDF inside `derive_from`).
    pub(crate) fn new(secret: &[u8], name: &str, secure: bool) -> Self {
        Self { key: Key::derive_from(secret), name: name.to_owned(), state_name: format!("{name}_state"), secure }
    }

    /// Takes our cookies out of `headers` in one scan of the `Cookie`
    /// header(s): the other cookies stay, in order, in one header; a header
    /// with none of ours is left as it was.
    pub fn take(&self, headers: &mut HeaderMap) -> Result<Carried, CookieError> {
        let mut carried = Carried::default();
        let mut others = 0usize;
        for (name, value, _) in pairs(headers) {
            if name == self.name.as_bytes() {
                // Header values are visible ASCII: a value that is not UTF-8 fails its signature.
                carried.session.push(String::from_utf8_lossy(value).into_owned());
            } else if name == self.state_name.as_bytes() {
                carried.state.push(String::from_utf8_lossy(value).into_owned());
            } else if !name.is_empty() {
                others += 1;
            }
        }
        // The common case (none of ours): nothing copied, the header untouched.
        if carried.is_empty() {
            return Ok(carried);
        }
        let mut kept: Vec<u8> = Vec::new();
        if others > 0 {
            let ours = |name: &[u8]| name == self.name.as_bytes() || name == self.state_name.as_bytes();
            for (_, _, pair) in pairs(headers).filter(|(name, _, _)| !name.is_empty() && !ours(name)) {
                if !kept.is_empty() {
                    kept.extend_from_slice(b"; ");
                }
                kept.extend_from_slice(pair);
            }
        }
        headers.remove(COOKIE);
        if others > 0 {
            headers.insert(COOKIE, HeaderValue::from_bytes(&kept).map_err(CookieError)?);
        }
        Ok(carried)
    }

    /// The value of the first correctly signed cookie named `name` among `values`.
    fn verified(&self, name: &str, values: &[String]) -> Option<String> {
        values.iter().find_map(|value| {
            let mut jar = CookieJar::new();
            jar.add_original(Cookie::new(name.to_owned(), value.clone()));
            jar.signed(&self.key).get(name).map(|c| c.value().to_owned())
        })
    }

    /// The session id of a correctly signed session cookie; a forged,
    /// tampered or malformed cookie is simply no session.
    pub fn session_id(&self, carried: &Carried) -> Option<SessionId> {
        let id = self.verified(&self.name, &carried.session)?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(SessionId(id))
    }

    /// The state and the destination a correctly signed state cookie binds.
    pub(crate) fn state(&self, carried: &Carried) -> Option<String> {
        self.verified(&self.state_name, &carried.state)
    }

    /// The signed session cookie for `id`; with `max_age`, a persistent one
    /// (rounded up to whole seconds: a session with 0.9 s left must not get
    /// `Max-Age=0`, which deletes the cookie; the store ends it on time).
    pub(crate) fn session_cookie(&self, id: &SessionId, max_age: Option<Duration>) -> Result<HeaderValue, CookieError> {
        let mut cookie = self.cookie(self.name.clone(), id.0.clone());
        if let Some(ttl) = max_age {
            let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            cookie.set_max_age(cookie::time::Duration::seconds(secs as i64));
        }
        self.signed(cookie)
    }

    /// A signed, short-lived cookie binding `state` (and the destination it
    /// carries) to this browser.
    pub(crate) fn state_cookie(
        &self,
        state: &str,
        destination: &str,
        ttl: Duration,
    ) -> Result<HeaderValue, CookieError> {
        let value = format!("{state}.{}", crate::query::component(destination));
        let mut cookie = self.cookie(self.state_name.clone(), value);
        cookie.set_max_age(cookie::time::Duration::seconds(ttl.as_secs() as i64));
        self.signed(cookie)
    }

    /// A `Set-Cookie` value that removes the session cookie from the browser.
    pub fn expired_session_cookie(&self) -> HeaderValue {
        self.removal(self.name.clone())
    }

    /// A `Set-Cookie` value that removes the state cookie.
    pub fn expired_state_cookie(&self) -> HeaderValue {
        self.removal(self.state_name.clone())
    }

    fn removal(&self, name: String) -> HeaderValue {
        let mut cookie = self.cookie(name, String::new());
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| unreachable!("cookie names are checked at load"))
    }

    fn signed(&self, cookie: Cookie<'static>) -> Result<HeaderValue, CookieError> {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(cookie);
        let signed = jar.delta().next().map(|c| c.to_string()).unwrap_or_default();
        HeaderValue::from_str(&signed).map_err(CookieError)
    }

    fn cookie(&self, name: String, value: String) -> Cookie<'static> {
        Cookie::build((name, value)).http_only(true).same_site(SameSite::Lax).path("/").secure(self.secure).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CookieCodec {
        CookieCodec::new(&[b'k'; 40], "fg", true)
    }

    #[test]
    fn our_cookies_are_taken_out_and_the_others_kept_in_order() {
        let c = codec();
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; fg=signed; fg_state=s.x"));
        h.append(COOKIE, HeaderValue::from_static("fgx=2;b=3"));
        let carried = c.take(&mut h).unwrap();
        assert!(carried.has_session() && !carried.state.is_empty());
        assert_eq!(carried.session, ["signed"]);
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1; fgx=2; b=3"]);
        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, HeaderValue::from_static("fg_state=1"));
        let carried = c.take(&mut only_ours).unwrap();
        assert!(!carried.has_session() && !carried.is_empty());
        assert!(only_ours.get(COOKIE).is_none());
        // None of ours: the headers are left exactly as they came.
        let mut theirs = HeaderMap::new();
        theirs.append(COOKIE, HeaderValue::from_static("a=1;;b=2"));
        theirs.append(COOKIE, HeaderValue::from_static("c=3"));
        assert!(c.take(&mut theirs).unwrap().is_empty());
        assert_eq!(theirs.get_all(COOKIE).iter().collect::<Vec<_>>(), vec!["a=1;;b=2", "c=3"]);
    }

    #[test]
    fn only_a_signed_session_cookie_names_a_session() {
        let c = codec();
        let id = SessionId::random();
        let set = c.session_cookie(&id, None).unwrap();
        let attrs = set.to_str().unwrap();
        assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax") && attrs.contains("Path=/"), "{attrs}");
        assert!(attrs.contains("Secure") && !attrs.contains("Max-Age"), "{attrs}");
        let pair = attrs.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("fg=forged; {pair}")).unwrap());
        assert_eq!(c.session_id(&c.take(&mut h).unwrap()), Some(id));
        let mut bare = HeaderMap::new();
        bare.insert(COOKIE, HeaderValue::from_str(&format!("fg={}", "a".repeat(64))).unwrap());
        assert_eq!(c.session_id(&c.take(&mut bare).unwrap()), None);
    }

    #[test]
    fn debug_shows_no_cookie_value() {
        let c = codec();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("fg=secret-session-value"));
        let carried = c.take(&mut h).unwrap();
        assert!(!format!("{carried:?} {c:?}").contains("secret-session-value"));
    }
}
