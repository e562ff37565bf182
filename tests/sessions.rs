//! Sessions end to end: the real binary for the whole journey, in-process
//! servers for the details. Returning users, expiry, logout, fixation,
//! protected paths, identity headers and spoofing.

use ferrygate_testkit as common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

fn token_body(expires_in: u64) -> &'static str {
    Box::leak(
        format!(r#"{{"access_token":"tok-{expires_in}","token_type":"bearer","expires_in":{expires_in}}}"#)
            .into_boxed_str(),
    )
}

const PROTECTED: &str = "protected_paths = [\"/account\"]";

#[tokio::test]
async fn the_whole_journey_with_the_real_binary() {
    let mock = Mock::start(200, token_body(2), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = spawn_binary(&qwyk_config(mock.addr, upstream, "", PROTECTED));

    // Protected page without a session: to the login form, the page kept as destination.
    let res = get(&gw.url("/account/orders?page=2")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location().path(), "/login");
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/account/orders?page=2"));

    // Log in: a session cookie with the spec's attributes.
    let login = post_form(&gw.url("/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let set_cookie = login.header("set-cookie").to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "cookie_secure = false: {set_cookie}");
    let cookie = cookie_pair(&login);
    assert_eq!(mock.requests().len(), 1);

    // Returning user: straight to the portal with the cached token, no provider call.
    let back = get_with_cookie(&gw.url("/login?destination=/my-portal/x"), &cookie).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let portal = back.location();
    assert_eq!(portal.host_str(), Some("portal.acme.example"));
    assert_eq!(param(&portal, "token").as_deref(), Some("tok-2"));
    assert_eq!(param(&portal, "destination").as_deref(), Some("/my-portal/x"));
    let remaining: u64 = param(&portal, "expires_in").unwrap().parse().unwrap();
    assert!(remaining <= 2, "remaining expires_in, not more than the original: {remaining}");
    assert_eq!(mock.requests().len(), 1, "a returning user costs no provider call");

    // Protected page with the session: proxied with identity, spoofing removed, our cookie kept back.
    let res = send(
        Request::get(gw.url("/account"))
            .header("cookie", format!("theme=dark; {cookie}"))
            .header("X-Ferrygate-User", "mallory@evil.example")
            .header("x_ferrygate_user", "mallory@evil.example")
            .header("X-FERRYGATE-ORG-ID", "666")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let echo = res.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@example.com"]);
    assert_eq!(echoed(&echo, "x-ferrygate-provider"), vec!["acme-qwyk"]);
    assert!(echoed(&echo, "x-ferrygate-org-id").is_empty(), "qwyk knows no org id; the spoofed one must go");
    assert!(echoed(&echo, "x_ferrygate_user").is_empty());
    assert_eq!(echoed(&echo, "cookie"), vec!["theme=dark"]);

    // After expiry (2 s): the site's own form again, and the protected page redirects.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let res = get_with_cookie(&gw.url("/login"), &cookie).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.json()["uri"], "/login");
            break;
        }
        assert!(Instant::now() < deadline, "the session outlived its token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get_with_cookie(&gw.url("/account"), &cookie).await.status, StatusCode::SEE_OTHER);

    // Log in again, log out: the old cookie no longer works; logout is idempotent.
    let login = post_form(&gw.url("/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    let cookie = cookie_pair(&login);
    assert_eq!(get_with_cookie(&gw.url("/login"), &cookie).await.status, StatusCode::SEE_OTHER);
    for _ in 0..2 {
        let out = get_with_cookie(&gw.url("/portal-logout"), &cookie).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert!(out.header("set-cookie").contains("Max-Age=0"), "{}", out.header("set-cookie"));
    }
    assert_eq!(get_with_cookie(&gw.url("/login"), &cookie).await.status, StatusCode::OK);
    assert_eq!(get_with_cookie(&gw.url("/account"), &cookie).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn returning_users_get_the_remaining_lifetime() {
    let mock = Mock::start(200, token_body(7200), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(mock.addr, upstream, "", "")).await;
    let login = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "pw")]).await;
    let cookie = cookie_pair(&login);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let back = get_with_cookie(&gw.url("/login"), &cookie).await;
    let remaining: u64 = param(&back.location(), "expires_in").unwrap().parse().unwrap();
    assert!((7190..7200).contains(&remaining), "{remaining}");
    assert_eq!(param(&back.location(), "destination").as_deref(), Some("/my-portal"));
    // The query's destination as for a fresh login (`destination` before `next`), refused ones not.
    let both = get_with_cookie(&gw.url("/login?next=%2Fmy-portal%2Fa&destination=%2Fmy-portal%2Fb"), &cookie).await;
    assert_eq!(param(&both.location(), "destination").as_deref(), Some("/my-portal/b"));
    let evil = get_with_cookie(&gw.url("/login?destination=https%3A%2F%2Fevil.example%2F"), &cookie).await;
    assert_eq!(param(&evil.location(), "destination").as_deref(), Some("/my-portal"));
    // HEAD too, and the wizard route builds its destination from the query.
    let head = send(Request::head(gw.url("/login")).header("cookie", &cookie).body(Full::default()).unwrap()).await;
    assert_eq!(head.status, StatusCode::SEE_OTHER);
    let wizard = get_with_cookie(&gw.url("/book?origin=NLRTM&product=fcl&other=x"), &cookie).await;
    assert_eq!(
        param(&wizard.location(), "destination").as_deref(),
        Some("/my-portal/quotations/new?origin=NLRTM&product=fcl")
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn every_login_issues_a_new_session_and_ends_the_old_one() {
    let mock = Mock::start(200, token_body(600), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(mock.addr, upstream, "", "")).await;
    let first = cookie_pair(&post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "pw")]).await);
    let again = send(
        Request::post(gw.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &first)
            .body(Full::new(Bytes::from("email=a%40b.example&password=pw&remember=on")))
            .unwrap(),
    )
    .await;
    let second = cookie_pair(&again);
    assert_ne!(first, second);
    assert!(again.header("set-cookie").contains("Max-Age="), "remember me makes the cookie persistent");
    assert_eq!(get_with_cookie(&gw.url("/login"), &first).await.status, StatusCode::OK, "old session still alive");
    assert_eq!(get_with_cookie(&gw.url("/login"), &second).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forged_or_tampered_cookies_are_no_session() {
    let mock = Mock::start(200, token_body(600), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(mock.addr, upstream, "", PROTECTED)).await;
    let good = cookie_pair(&post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "pw")]).await);
    let (name, value) = good.split_once('=').unwrap();
    let mut tampered = value.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    for forged in [format!("{name}={tampered}"), format!("{name}={}", "0".repeat(64)), format!("{name}=")] {
        assert_eq!(get_with_cookie(&gw.url("/login"), &forged).await.status, StatusCode::OK, "{forged}");
        assert_eq!(get_with_cookie(&gw.url("/account"), &forged).await.status, StatusCode::SEE_OTHER);
    }
}

#[tokio::test]
async fn protected_paths_cannot_be_reached_by_spelling_tricks() {
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config("127.0.0.1:9".parse().unwrap(), upstream, "", PROTECTED)).await;
    for path in
        ["/account", "/account/", "//account", "/./account", "/x/../account", "/%61ccount", "/account;x", "/ACCOUNT"]
    {
        let res = get(&gw.url(path)).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{path} reached the site without a session");
    }
    assert_eq!(get(&gw.url("/accounts")).await.status, StatusCode::OK);
    assert_eq!(get(&gw.url("/public")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_json_login_sets_the_cookie_too_and_secure_is_the_default() {
    let mock = Mock::start(200, token_body(600), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(mock.addr, upstream, "", "").replace("cookie_secure = false\n", "")).await;
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": "pw"})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.header("set-cookie").contains("; Secure"), "{}", res.header("set-cookie"));
}

#[tokio::test]
async fn no_session_outlives_max_ttl() {
    let mock = Mock::start(200, token_body(7200), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(
        &qwyk_config(mock.addr, upstream, "", "")
            .replace("cookie_secure = false\n", "cookie_secure = false\nmax_ttl = \"1s\"\n"),
    )
    .await;
    let login = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "pw"), ("remember", "on")]).await;
    assert!(
        login.header("set-cookie").contains("Max-Age=1"),
        "the cookie is capped too: {}",
        login.header("set-cookie")
    );
    let cookie = cookie_pair(&login);
    let back = get_with_cookie(&gw.url("/login"), &cookie).await;
    let remaining: u64 = param(&back.location(), "expires_in").unwrap().parse().unwrap();
    assert!(remaining <= 1, "a 7200 s token, capped at max_ttl = 1 s: {remaining}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_with_cookie(&gw.url("/login"), &cookie).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the session outlived max_ttl");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_custom_cookie_name_is_the_one_set_read_stripped_and_cleared() {
    let mock = Mock::start(200, token_body(600), Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let config = qwyk_config(mock.addr, upstream, "", PROTECTED)
        .replace("cookie_secure = false", "cookie_secure = false\ncookie_name = \"acme_sid\"");
    let gw = gateway(&config).await;
    let login = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "pw")]).await;
    let cookie = cookie_pair(&login);
    let (name, value) = cookie.split_once('=').unwrap();
    assert_eq!(name, "acme_sid", "{}", login.header("set-cookie"));
    // Read under that name: a returning user, and the protected path passes.
    assert_eq!(get_with_cookie(&gw.url("/login"), &cookie).await.status, StatusCode::SEE_OTHER);
    let inside = get_with_cookie(&gw.url("/account"), &format!("theme=dark; {cookie}")).await;
    assert_eq!(inside.status, StatusCode::OK);
    // Stripped under that name too: the site keeps its own cookie, never the session id.
    assert_eq!(echoed(&inside.json(), "cookie"), vec!["theme=dark"]);
    // The same value under the default name is no session.
    let default_name = format!("ferrygate_session={value}");
    assert_eq!(get_with_cookie(&gw.url("/login"), &default_name).await.status, StatusCode::OK);
    assert_eq!(get_with_cookie(&gw.url("/account"), &default_name).await.status, StatusCode::SEE_OTHER);
    // Logout clears the cookie by its name.
    let out = get_with_cookie(&gw.url("/portal-logout"), &cookie).await;
    let cleared = out.header("set-cookie");
    assert!(cleared.starts_with("acme_sid=") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(get_with_cookie(&gw.url("/account"), &cookie).await.status, StatusCode::SEE_OTHER);
}
