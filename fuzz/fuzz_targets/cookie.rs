//! The session and OAuth2-state cookies (`ferrygate_core::session::SessionManager`):
//! no `Cookie` header may panic the parser, be taken for a signed session or
//! state, leave one of our cookies behind after `strip_cookies`, or hide a genuine
//! state cookie that comes after it.
//!
//! Input: `<cookie header>\0<offered state>`; without a NUL no state is offered.
//! The offered text (UTF-8) also serves as the destination bound into a state
//! cookie the manager mints itself.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferrygate_core::session::{new_state, CookieSettings, SessionManager, StateRefused};
use ferrygate_core::{MemoryStore, SecretString};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn manager() -> &'static SessionManager {
    static MANAGER: OnceLock<SessionManager> = OnceLock::new();
    MANAGER.get_or_init(|| {
        static SECRET: OnceLock<SecretString> = OnceLock::new();
        let secret = SECRET.get_or_init(|| SecretString::from("k".repeat(40)));
        let settings = CookieSettings { secret, name: "fg", secure: true, max_ttl: Duration::from_secs(3600) };
        SessionManager::new(settings, Arc::new(MemoryStore::new(10)))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fuzz_target!(|data: &[u8]| {
    let m = manager();
    let (cookie, offered) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], std::str::from_utf8(&data[i + 1..]).ok()),
        None => (data, None),
    };
    let Ok(value) = HeaderValue::from_bytes(cookie) else { return };
    let mut headers = HeaderMap::new();
    headers.append(COOKIE, value);

    // Nothing the fuzzer writes is signed with the manager's key. (A corpus
    // entry holding a cookie minted with this very key would trip this.)
    assert!(m.session_id(&headers).is_none(), "a forged session cookie was accepted");
    let take = |headers: &HeaderMap, offered: Option<&str>| runtime().block_on(m.take_state(headers, offered));
    match take(&headers, offered) {
        Err(StateRefused::Missing) => {}
        other => panic!("an unsigned state cookie was not `Missing`: {other:?}"),
    }

    // The site never sees our cookie.
    let _ = m.has_cookie(&headers);
    let mut stripped = headers.clone();
    m.strip_cookies(&mut stripped);
    assert!(!m.our_cookies(&stripped).any(), "strip_cookies left one of our cookies: {stripped:?}");
    assert!(m.session_id(&stripped).is_none());

    // A state the manager minted round-trips its destination exactly once,
    // even behind whatever junk cookies came first.
    if let Some(destination) = offered {
        let state = new_state();
        let set = m.state_cookie(&state, destination);
        let pair = set.to_str().expect("Set-Cookie is ASCII").split(';').next().unwrap_or("");
        headers.append(COOKIE, HeaderValue::from_str(pair).expect("a minted cookie is a header value"));
        assert_eq!(take(&headers, Some(&state)).as_deref(), Ok(destination));
        assert_eq!(take(&headers, Some(&state)), Err(StateRefused::Replayed));
    }
});
