//! End to end: the payway flow against a recording mock of Payway's token,
//! login and authorization endpoints.

use ferrygate_testkit as common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

/// How the mock token endpoint and login endpoint behave.
#[derive(Default)]
struct Payway {
    token_requests: AtomicUsize,
    login_requests: AtomicUsize,
    seen: Mutex<Vec<Recorded>>,
    /// Tokens numbered below this are rejected with a bare 401.
    reject_below: AtomicUsize,
    token_down: std::sync::atomic::AtomicBool,
    token_delay_ms: AtomicUsize,
    expires_in: AtomicUsize,
    /// The n-th rejection of a token is answered after n times this.
    reject_step_ms: AtomicUsize,
    rejections: AtomicUsize,
    /// Rejections come in Payway's own error shape (`{"status": "error", "code": "invalid_token"}`).
    reject_in_error_shape: std::sync::atomic::AtomicBool,
}

async fn mock() -> (std::net::SocketAddr, Arc<Payway>) {
    let state = Arc::new(Payway::default());
    state.expires_in.store(3600, Ordering::SeqCst);
    let s = state.clone();
    let addr = serve(move |req: Request<Incoming>| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let path = parts.uri.path().to_owned();
            s.seen.lock().unwrap().push(Recorded {
                method: parts.method.to_string(),
                path: path.clone(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
            let json = |status: u16, v: serde_json::Value| {
                Response::builder().status(status).header("content-type", "application/json").body(full(v.to_string())).unwrap()
            };
            match path.as_str() {
                "/oauth2/token" => {
                    let n = s.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(s.token_delay_ms.load(Ordering::SeqCst) as u64)).await;
                    if s.token_down.load(Ordering::SeqCst) {
                        return json(503, serde_json::json!({"error": "down"}));
                    }
                    json(200, serde_json::json!({"access_token": format!("svc-{n}"), "expires_in": s.expires_in.load(Ordering::SeqCst)}))
                }
                "/oauth2/login" => {
                    s.login_requests.fetch_add(1, Ordering::SeqCst);
                    let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                    let n: usize = auth.strip_prefix("OAuth svc-").and_then(|n| n.parse().ok()).unwrap_or(0);
                    if n == 0 || n < s.reject_below.load(Ordering::SeqCst) {
                        let k = s.rejections.fetch_add(1, Ordering::SeqCst);
                        let step = s.reject_step_ms.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis((k * step) as u64)).await;
                        if s.reject_in_error_shape.load(Ordering::SeqCst) {
                            return json(401, serde_json::json!({"status": "error", "code": "invalid_token", "message": "Token revoked"}));
                        }
                        return json(401, serde_json::json!({"error": "invalid_token"}));
                    }
                    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
                    let password = form.iter().find(|(k, _)| k == "password").map(|(_, v)| v.as_str()).unwrap_or("");
                    match password {
                        "wrong" => json(
                            401,
                            serde_json::json!({"status": "error", "code": "invalid_username_or_password", "field": "unspecified_field", "message": "Invalid username and/or password", "error_data": null}),
                        ),
                        "locked" => json(200, serde_json::json!({"status": "error", "code": "account_locked", "message": "Locked"})),
                        _ => json(200, serde_json::json!({"status": "ok", "result": "53f9e2a1-1c1e-425a-bdae-24894c0f6916"})),
                    }
                }
                _ => json(404, serde_json::json!({})),
            }
        }
    })
    .await;
    (addr, state)
}

fn config(payway: std::net::SocketAddr, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[sessions]
secret = "{SECRET}"
cookie_secure = false

[limits]
login_per_ip = "100000/min"   # this file counts token requests, not limits

[providers.news]
kind = "payway"
server = "http://{payway}"
client_id = "6a98217e95ddeee048023001"
client_secret = "client-secret-&=+"
oid = "adeprimo"
redirect_uri = "https://www.news.example/landing"
scope = "/external/me/w /external/me/r"
timeout = "2s"

[[sites]]
name = "news"
upstream = "http://{upstream}"
provider = "news"

[sites.login]
path = "/login"

[sites.portal]
default_destination = "/"
allowed_destinations = ["/"]

[sites.callback]
path = "/landing"
"#
    )
}

async fn setup() -> (Arc<Payway>, Gateway) {
    let (addr, state) = mock().await;
    let upstream = echo_upstream().await;
    (state, gateway(&config(addr, upstream)).await)
}

fn login_form(password: &str) -> Vec<(&'static str, String)> {
    vec![("email", "reader@news.example".to_owned()), ("password", password.to_owned())]
}

async fn login(gw: &Gateway, password: &str) -> Answer {
    login_as(gw, "reader@news.example", password).await
}

async fn login_as(gw: &Gateway, email: &str, password: &str) -> Answer {
    let mut form = login_form(password);
    form[0].1 = email.to_owned();
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_form(&gw.url("/login"), &pairs).await
}

#[tokio::test]
async fn the_wire_format_and_the_authorization_redirect() {
    let (state, gw) = setup().await;
    let password = "p&ss=w+rd %20 ünï";
    let res = post_form(
        &gw.url("/login?destination=/articles/1"),
        &[("email", "reader@news.example"), ("password", password), ("remember", "on")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);

    let token = &seen[0];
    assert_eq!((token.method.as_str(), token.path.as_str()), ("POST", "/oauth2/token"));
    assert_eq!(token.headers["content-type"], "application/x-www-form-urlencoded");
    assert!(token.headers.get("authorization").is_none(), "client_secret_post: no Basic header");
    let form: Vec<(String, String)> = form_urlencoded::parse(&token.body).into_owned().collect();
    assert_eq!(
        form,
        vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "6a98217e95ddeee048023001".into()),
            ("client_secret".into(), "client-secret-&=+".into()),
            ("scope".into(), "/oauth2/login/x".into()),
        ]
    );

    let login = &seen[1];
    assert_eq!((login.method.as_str(), login.path.as_str()), ("POST", "/oauth2/login"));
    assert_eq!(login.headers["authorization"], "OAuth svc-1");
    assert_eq!(login.headers["accept"], "application/json");
    assert_eq!(login.headers["content-type"], "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = form_urlencoded::parse(&login.body).into_owned().collect();
    assert_eq!(
        form,
        vec![
            ("username".into(), "reader@news.example".into()),
            ("password".into(), password.into()),
            ("persist".into(), "true".into()),
        ]
    );

    let location = res.location();
    assert_eq!(
        location.as_str().split('?').next(),
        Some(format!("http://{}/oauth2/auth", token_host(&gw, &seen)).as_str())
    );
    let q = query(&location);
    let names: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["client_id", "redirect_uri", "state", "response_type", "oid", "scope", "login_handle"]);
    assert_eq!(param(&location, "client_id").as_deref(), Some("6a98217e95ddeee048023001"));
    assert_eq!(param(&location, "redirect_uri").as_deref(), Some("https://www.news.example/landing"));
    assert_eq!(param(&location, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&location, "oid").as_deref(), Some("adeprimo"));
    assert_eq!(param(&location, "scope").as_deref(), Some("/external/me/w /external/me/r"));
    assert!(location.as_str().contains("scope=%2Fexternal%2Fme%2Fw%20%2Fexternal"), "space-delimited, url-encoded");
    assert_eq!(param(&location, "login_handle").as_deref(), Some("53f9e2a1-1c1e-425a-bdae-24894c0f6916"));
    let state_param = param(&location, "state").unwrap();
    assert!(state_param.len() >= 32 && state_param.bytes().all(|b| b.is_ascii_hexdigit()), "{state_param}");

    let cookies: Vec<&str> = res.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("ferrygate_session_state=") && c.contains("HttpOnly")), "{cookies:?}");
}

fn token_host(_gw: &Gateway, seen: &[Recorded]) -> String {
    seen[0].headers["host"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn one_token_serves_sequential_and_concurrent_logins() {
    let (state, gw) = setup().await;
    for _ in 0..20 {
        assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER);
    }
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 1, "20 sequential logins");

    let (state, gw) = setup().await;
    state.token_delay_ms.store(300, Ordering::SeqCst);
    let gw = Arc::new(gw);
    // Fifty different readers at once (one account has one attempt in flight at a time).
    let logins: Vec<_> = (0..50)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move { login_as(&gw, &format!("reader{i}@news.example"), "right").await.status })
        })
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 1, "50 concurrent logins on an empty cache");
    assert_eq!(state.login_requests.load(Ordering::SeqCst), 50);
}

#[tokio::test]
async fn an_expired_token_is_fetched_again() {
    let (state, gw) = setup().await;
    state.expires_in.store(1, Ordering::SeqCst);
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER);
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once_and_never_in_a_loop() {
    let (state, gw) = setup().await;
    state.reject_below.store(2, Ordering::SeqCst); // svc-1 is rejected, svc-2 accepted
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(state.login_requests.load(Ordering::SeqCst), 2);

    let (state, gw) = setup().await;
    state.reject_below.store(usize::MAX, Ordering::SeqCst);
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "r@news.example", "password": "right"})).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(res.json()["error"], "provider_unavailable");
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(state.login_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_401_in_the_error_shape_is_a_token_problem_unless_it_is_a_wrong_password() {
    let (state, gw) = setup().await;
    state.reject_in_error_shape.store(true, Ordering::SeqCst);
    state.reject_below.store(2, Ordering::SeqCst); // svc-1 revoked early, svc-2 accepted
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER, "a revoked token must be replaced");
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(state.login_requests.load(Ordering::SeqCst), 2);
    // A wrong password answered 401 in the error shape is the user's, not the token's.
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "r@news.example", "password": "wrong"})).await;
    assert_eq!(res.json()["error"], "invalid_credentials");
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2, "no token was fetched for a wrong password");
    assert_eq!(state.login_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn concurrent_logins_replace_a_revoked_token_once() {
    let (state, gw) = setup().await;
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER); // svc-1 cached
                                                                         // svc-1 is revoked; six logins in flight with it hear so one after another,
                                                                         // the later ones after the first has already fetched svc-2.
    state.reject_below.store(2, Ordering::SeqCst);
    state.reject_step_ms.store(30, Ordering::SeqCst);
    let gw = Arc::new(gw);
    let logins: Vec<_> = (0..6)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move { login_as(&gw, &format!("reader{i}@news.example"), "right").await.status })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2, "a fresh token was dropped for a stale rejection");
}

#[tokio::test]
async fn a_token_endpoint_outage_is_502_and_not_cached() {
    let (state, gw) = setup().await;
    state.token_down.store(true, Ordering::SeqCst);
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "r@news.example", "password": "right"})).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(state.login_requests.load(Ordering::SeqCst), 0);
    state.token_down.store(false, Ordering::SeqCst);
    assert_eq!(login(&gw, "right").await.status, StatusCode::SEE_OTHER);
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refusals_map_to_their_codes() {
    let (_state, gw) = setup().await;
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "r@news.example", "password": "wrong"})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["error"], "invalid_credentials");
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "r@news.example", "password": "locked"})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["error"], "provider_rejected");
    assert!(!res.text().contains("Locked"), "the provider's message is never shown raw");
}

fn callback(gw: &Gateway, state: Option<&str>, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let path = match state {
        Some(s) => format!("/landing?code=abc&state={s}"),
        None => "/landing?code=abc".to_owned(),
    };
    let mut req = Request::get(gw.url(&path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.body(Full::default()).unwrap()
}

#[tokio::test]
async fn the_callback_checks_the_state_once() {
    let (_state, gw) = setup().await;
    let res = post_form(
        &gw.url("/login"),
        &[("email", "r@news.example"), ("password", "right"), ("destination", "/articles/7?x=1")],
    )
    .await;
    let state = param(&res.location(), "state").unwrap();
    let state_cookie = res
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("ferrygate_session_state="))
        .unwrap();

    let forged = format!("ferrygate_session_state={state}.%2F");
    for (offered, cookie) in [
        (Some(state.as_str()), Some(forged.as_str())),
        (Some("0123456789abcdef0123456789abcdef"), Some(state_cookie.as_str())),
        (None, Some(state_cookie.as_str())),
        (Some(state.as_str()), None),
    ] {
        let res = send(callback(&gw, offered, cookie)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{offered:?} {cookie:?}");
        assert_eq!(res.text().trim(), "state_mismatch");
    }

    let res = send(callback(&gw, Some(&state), Some(&state_cookie))).await;
    assert_eq!(res.status, StatusCode::OK);
    let echo = res.json();
    assert_eq!(echo["uri"], format!("/landing?code=abc&state={state}"));
    assert_eq!(echoed(&echo, "x-ferrygate-destination"), vec!["/articles/7?x=1"]);
    let cleared = res.header("set-cookie");
    assert!(cleared.starts_with("ferrygate_session_state=;") && cleared.contains("Max-Age=0"), "{cleared}");

    let replay = send(callback(&gw, Some(&state), Some(&state_cookie))).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN, "a state is single use");
}

#[tokio::test]
async fn token_url_token_scope_and_persist_false_reach_the_wire() {
    let (addr, state) = mock().await;
    let upstream = echo_upstream().await;
    let cfg = config(addr, upstream).replace(
        "timeout = \"2s\"",
        &format!("timeout = \"2s\"\ntoken_url = \"http://{addr}/oauth2/token?tenant=news\"\ntoken_scope = \"/oauth2/login/custom\""),
    );
    let gw = gateway(&cfg).await;
    // No "remember" field: persist=false.
    let res = login(&gw, "pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!((seen[0].path.as_str(), seen[0].query.as_deref()), ("/oauth2/token", Some("tenant=news")));
    let form: Vec<(String, String)> = form_urlencoded::parse(&seen[0].body).into_owned().collect();
    assert!(form.contains(&("scope".into(), "/oauth2/login/custom".into())), "{form:?}");
    let login: Vec<(String, String)> = form_urlencoded::parse(&seen[1].body).into_owned().collect();
    assert!(login.contains(&("persist".into(), "false".into())), "{login:?}");
}

/// The real binary counts service-token fetches on `/metrics`
/// (`ferrygate_service_token_fetches_total{provider}`): one for many logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_token_fetches_are_counted_on_the_admin_metrics() {
    let (addr, state) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    let text = config(addr, echo_upstream().await);
    std::fs::write(&path, format!("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{text}"))
        .unwrap();
    let fg = start_logged(&["serve", "--log-format", "json", "--config"], &path, "info");
    let listening: serde_json::Value = serde_json::from_str(fg.early.last().unwrap()).unwrap();
    let admin = listening["admin"].as_str().unwrap().to_owned();
    for i in 0..3 {
        let email = format!("reader{i}@news.example");
        let res =
            post_form(&format!("http://{}/login", fg.addr), &[("email", email.as_str()), ("password", "right")]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        // A failed form login is a 303 too: this one goes to the OAuth2 step with a handle.
        assert_eq!(res.location().path(), "/oauth2/auth", "{}", res.header("location"));
        assert!(param(&res.location(), "login_handle").is_some(), "{}", res.header("location"));
    }
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 1);
    let text = get(&format!("http://{admin}/metrics")).await.text();
    let needle = r#"ferrygate_service_token_fetches_total{provider="news"} 1"#;
    assert!(text.contains(needle), "missing {needle} in:\n{text}");
}

/// A failed payway login keeps where the reader was going (validated).
#[tokio::test]
async fn a_wrong_password_keeps_the_destination() {
    let (_state, gw) = setup().await;
    let res =
        post_form(&gw.url("/login?destination=/"), &[("email", "reader@news.example"), ("password", "wrong")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(param(&res.location(), "error").as_deref(), Some("invalid_credentials"));
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/"));
}
