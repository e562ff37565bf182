//! The `oidc` provider against a real OpenID provider process: the npm
//! `oauth2-mock-server` 8.2.3 (tests/oidc/issuer.mjs adds a user table,
//! client authentication, rotating refresh tokens and test controls on top of
//! its discovery, JWKS, token and userinfo endpoints), started here on a free
//! loopback port and stopped by PID. Needs Node and `npm ci` in tests/oidc
//! (`scripts/test` does both); without them the tests fail saying so.
//! Error mappings the real process cannot produce (5xx, a hang,
//! `interaction_required`) use a recorded mock token endpoint.
//!
//! Longer than 400 lines on purpose: one provider kind's whole behaviour
//! against one real OpenID provider process (discovery, the grant, keys,
//! claims, renewal), each case a test that reads top to bottom.

use ferrygate_testkit as common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

const CLIENT_ID: &str = "ferrygate-client";
/// Characters that RFC 6749 2.3.1's form-urlencoding changes before Base64.
const CLIENT_SECRET: &str = "s3cr:t+/=&% é";
const ALICE_PW: &str = "alice-Secret-pw-1";

/// A running issuer.mjs; killed when dropped.
struct Issuer {
    url: String,
    _child: Process,
    _dir: tempfile::TempDir,
}

impl Issuer {
    fn start(extra: Value) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/issuer.mjs");
        let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/node_modules/oauth2-mock-server");
        assert!(
            modules.is_dir() && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()),
            "node or tests/oidc/node_modules is missing: run scripts/test (it installs Node and runs npm ci in tests/oidc)"
        );
        let mut config = json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "expires_in": 3600,
            "users": [
                {"username": "alice@corp.test", "password": ALICE_PW, "sub": "u-alice", "email": "alice@corp.test",
                 "preferred_username": "alice", "groups": ["staff", "admins"]},
                {"username": "bob", "password": "bob-pw", "sub": "u-bob", "preferred_username": "bob", "groups": "staff"},
                {"username": "locked@corp.test", "password": "locked-pw", "sub": "u-locked", "locked": true},
                {"username": "eve", "password": "eve-pw", "sub": "u-eve", "email": "ceo@corp.test",
                 "email_verified": false, "preferred_username": "eve", "groups": ["staff"]},
                {"username": "mallory", "password": "mallory-pw", "sub": "u-mallory", "email": "ceo@corp.test",
                 "email_verified": "false", "groups": ["staff"]},
                {"username": "mfa@corp.test", "password": "mfa-pw", "sub": "u-mfa", "mfa": true},
            ],
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuer.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(&script)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("issuer.mjs did not say READY in 20 s");
        let url = line.trim().strip_prefix("READY ").unwrap_or_else(|| panic!("issuer.mjs said {line:?}")).to_owned();
        Self { url, _child: Process(child), _dir: dir }
    }

    async fn control(&self, what: &str) -> Value {
        let url = format!("{}/_control/{what}", self.url);
        let res = if what.starts_with("stats") || what.starts_with("last") || what.starts_with("issued") {
            get(&url).await
        } else {
            post_form(&url, &[]).await
        };
        assert_eq!(res.status, StatusCode::OK, "{what}: {}", res.text());
        res.json()
    }

    async fn stats(&self) -> Value {
        self.control("stats").await
    }
}

/// A gateway with one oidc site; `provider` goes into the provider table.
fn config(issuer: &str, upstream: std::net::SocketAddr, provider: &str, store: &str) -> String {
    let table = format!(
        "kind = \"oidc\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         scope = \"openid email profile groups\"\ntimeout = \"2s\"\n{provider}"
    );
    staff_config("", store, &table, upstream)
}

async fn gateway_for(issuer: &str, provider: &str) -> Gateway {
    gateway(&config(issuer, echo_upstream().await, provider, "")).await
}

async fn login(gw: &Gateway, user: &str, password: &str) -> Answer {
    post_json(&gw.url("/login"), json!({"email": user, "password": password})).await
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_with_identity_and_groups_by_the_password_grant() {
    let issuer = Issuer::start(json!({}));
    for (auth, seen) in [
        ("", "basic"),
        ("client_auth = \"client_secret_basic\"", "basic"),
        ("client_auth = \"client_secret_post\"", "post"),
    ] {
        let gw = gateway_for(&issuer.url, auth).await;
        let res = login(&gw, "alice@corp.test", ALICE_PW).await;
        assert_eq!(res.status, StatusCode::OK, "{auth}: {}", res.text());
        assert_eq!(res.json()["redirect"], "/app");
        let last = issuer.control("last").await;
        assert_eq!(last["grant_type"], "password");
        assert_eq!(last["client_auth"], seen, "{auth}");
        assert_eq!(last["client_id"], CLIENT_ID);
        assert_eq!(last["scope"], "openid email profile groups");
        assert_eq!(last["username"], "alice@corp.test");
        assert_eq!(last["accept"], "application/json");
        assert_eq!(last["content_type"], "application/x-www-form-urlencoded");
        let cookie = cookie_pair(&res);
        let echo = get_with_cookie(&gw.url("/app"), &cookie).await.json();
        assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.test"]);
        assert_eq!(echoed(&echo, "x-ferrygate-user-id"), vec!["u-alice"]);
        assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["staff,admins"]);
        assert_eq!(echoed(&echo, "x-ferrygate-provider"), vec!["corp"]);
        assert!(echoed(&echo, "authorization").is_empty(), "pass_access_token is off");
        assert_eq!(get_with_cookie(&gw.url("/admin"), &cookie).await.status, StatusCode::OK);
    }
    // Bob has no email claim (preferred_username names him) and one group as a string.
    let gw = gateway_for(&issuer.url, "").await;
    let bob = cookie_pair(&login(&gw, "bob", "bob-pw").await);
    let echo = get_with_cookie(&gw.url("/app"), &bob).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["bob"]);
    assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["staff"]);
    assert_eq!(get_with_cookie(&gw.url("/admin"), &bob).await.status, StatusCode::FORBIDDEN);
    // Eve typed the CEO's address into her profile: an unverified email names nobody.
    let eve = cookie_pair(&login(&gw, "eve", "eve-pw").await);
    let echo = get_with_cookie(&gw.url("/app"), &eve).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["eve"]);
    // "false" as a string (some userinfo endpoints) is not verified either; no preferred_username: sub.
    let mallory = cookie_pair(&login(&gw, "mallory", "mallory-pw").await);
    let echo = get_with_cookie(&gw.url("/app"), &mallory).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["u-mallory"]);
    // username_claim: the claim named, falling back to preferred_username, then sub.
    let gw = gateway_for(&issuer.url, "username_claim = \"sub\"").await;
    let echo = get_with_cookie(&gw.url("/app"), &cookie_pair(&login(&gw, "bob", "bob-pw").await)).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["u-bob"]);
    // A browser's form post: 303 to the destination on the site itself.
    let res = post_form(
        &gw.url("/login"),
        &[("email", "alice@corp.test"), ("password", ALICE_PW), ("destination", "/admin")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location"), "/admin");
    // Discovery once, keys once, for all of the above.
    let stats = issuer.stats().await;
    assert_eq!((stats["discovery"].as_u64(), stats["jwks"].as_u64()), (Some(5), Some(5)), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_map_to_the_documented_codes() {
    let issuer = Issuer::start(json!({}));
    let gw = gateway_for(&issuer.url, "").await;
    for (user, password, status, code) in [
        ("alice@corp.test", "wrong", StatusCode::UNAUTHORIZED, "invalid_credentials"),
        ("nobody@corp.test", "x", StatusCode::UNAUTHORIZED, "invalid_credentials"),
        ("locked@corp.test", "locked-pw", StatusCode::UNAUTHORIZED, "invalid_credentials"),
        ("mfa@corp.test", "mfa-pw", StatusCode::UNAUTHORIZED, "provider_rejected"),
    ] {
        let res = login(&gw, user, password).await;
        assert_eq!((res.status, res.json()["error"].as_str()), (status, Some(code)), "{user}");
        // A form post goes back to the form with where the user was going.
        let res =
            post_form(&gw.url("/login"), &[("email", user), ("password", password), ("destination", "/admin")]).await;
        assert_eq!(param(&res.location(), "error").as_deref(), Some(code), "{user}");
        assert_eq!(param(&res.location(), "destination").as_deref(), Some("/admin"), "{user}");
    }
    // A wrong client secret is the operator's problem, not the user's.
    let wrong = config(&issuer.url, echo_upstream().await, "", "")
        .replace(&format!("client_secret = \"{CLIENT_SECRET}\""), "client_secret = \"not-it\"");
    let gw = gateway(&wrong).await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("provider_unavailable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_the_real_process_cannot_give() {
    let issuer = Issuer::start(json!({}));
    let cases: [(u16, &'static str, u64, StatusCode, &str); 11] = [
        (429, r#"{"error":"too_many_requests"}"#, 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (400, r#"{"error":"temporarily_unavailable"}"#, 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (400, r#"{"error":"interaction_required"}"#, 0, StatusCode::UNAUTHORIZED, "provider_rejected"),
        (400, r#"{"error":"consent_required"}"#, 0, StatusCode::UNAUTHORIZED, "provider_rejected"),
        (400, r#"{"error":"login_required"}"#, 0, StatusCode::UNAUTHORIZED, "provider_rejected"),
        (400, r#"{"error":"invalid_scope"}"#, 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (400, r#"{"error":"unsupported_grant_type"}"#, 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (401, r#"{"error":"unauthorized_client"}"#, 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (503, "upstream down", 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (200, r#"{"token_type":"Bearer"}"#, 0, StatusCode::BAD_GATEWAY, "provider_unavailable"),
        (200, r#"{"access_token":"a"}"#, 3000, StatusCode::GATEWAY_TIMEOUT, "provider_timeout"),
    ];
    for (status, reply, delay, want, code) in cases {
        let mock = Mock::start(status, reply, Duration::from_millis(delay)).await;
        let gw = gateway_for(&issuer.url, &format!("token_endpoint = \"http://{}/token\"", mock.addr)).await;
        let res = login(&gw, "alice@corp.test", ALICE_PW).await;
        assert_eq!((res.status, res.json()["error"].as_str()), (want, Some(code)), "{status} {reply}");
        assert_eq!(mock.requests().len(), 1, "{reply}");
        // The discovered endpoint was overridden: the password went only to the mock.
        let body = String::from_utf8_lossy(&mock.requests()[0].body).into_owned();
        assert!(body.contains("grant_type=password"), "{body}");
    }
    // 200 with an access token but no ID token: refused while id_token = "required".
    let mock = Mock::start(200, r#"{"access_token":"a","expires_in":60}"#, Duration::ZERO).await;
    let gw = gateway_for(&issuer.url, &format!("token_endpoint = \"http://{}/token\"", mock.addr)).await;
    assert_eq!(login(&gw, "alice@corp.test", ALICE_PW).await.json()["error"], "provider_unavailable");
}

/// `id_token = "optional"` with overridden endpoints: the claims come from
/// the configured `userinfo_endpoint` (with the access token), not the
/// discovered one; and an answer without `expires_in` lasts an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_at_its_configured_endpoint_and_an_hour_without_expires_in() {
    let issuer = Issuer::start(json!({}));
    let token = Mock::start(200, r#"{"access_token":"at-from-mock","token_type":"Bearer"}"#, Duration::ZERO).await;
    let claims = r#"{"sub":"u-9","email":"nine@corp.test","email_verified":true,"groups":["admins"]}"#;
    let userinfo = Mock::start(200, claims, Duration::ZERO).await;
    let overrides = format!(
        "id_token = \"optional\"\ntoken_endpoint = \"http://{}/token\"\nuserinfo_endpoint = \"http://{}/userinfo\"",
        token.addr, userinfo.addr
    );
    let gw = gateway_for(&issuer.url, &overrides).await;
    let res =
        post_form(&gw.url("/login"), &[("email", "nine@corp.test"), ("password", "pw"), ("remember", "on")]).await;
    assert_eq!(res.header("location"), "/app", "{}", res.text());
    let max_age = res.max_age();
    assert!((3590..=3600).contains(&max_age), "no expires_in is 3600 s: {max_age}");
    let asked = userinfo.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].headers["authorization"], "Bearer at-from-mock");
    assert_eq!(issuer.stats().await["userinfo"], 0, "the discovered userinfo endpoint was asked");
    let echo = get_with_cookie(&gw.url("/app"), &cookie_pair(&res)).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["nine@corp.test"]);
    assert_eq!(echoed(&echo, "x-ferrygate-user-id"), vec!["u-9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_must_name_the_configured_issuer_and_a_failure_is_not_kept() {
    // A trailing slash is another issuer.
    let issuer = Issuer::start(json!({}));
    let gw = gateway_for(&format!("{}/", issuer.url), "").await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("provider_unavailable")));
    assert_eq!(issuer.stats().await["password"], 0, "the password went to an issuer that is not the configured one");
    // Refused for the name it gave, not for a discovery that failed.
    assert_eq!(issuer.stats().await["discovery"], 1);
    // Nobody listening yet: 502; the next login, once the issuer is up, discovers it.
    let port = free_port();
    let gw = gateway_for(&format!("http://127.0.0.1:{port}"), "").await;
    assert_eq!(login(&gw, "alice@corp.test", ALICE_PW).await.status, StatusCode::BAD_GATEWAY);
    let late = Issuer::start(json!({"port": port}));
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(late.stats().await["discovery"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_refetches_the_keys_once_a_minute_at_most() {
    let issuer = Issuer::start(json!({}));
    let gw = gateway_for(&issuer.url, "").await;
    assert_eq!(login(&gw, "alice@corp.test", ALICE_PW).await.status, StatusCode::OK);
    assert_eq!(issuer.stats().await["jwks"], 1);
    // The provider rotates: the new kid is unknown, the keys are fetched again.
    issuer.control("rotate").await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(issuer.stats().await["jwks"], 2);
    // Known kid again: no fetch.
    assert_eq!(login(&gw, "alice@corp.test", ALICE_PW).await.status, StatusCode::OK);
    assert_eq!(issuer.stats().await["jwks"], 2);
    // A second rotation within the minute: the token is refused, the keys not fetched.
    issuer.control("rotate").await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("provider_unavailable")));
    assert_eq!(issuer.stats().await["jwks"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_id_token_userinfo_gives_the_claims_when_optional() {
    let issuer = Issuer::start(json!({"id_token": false}));
    let gw = gateway_for(&issuer.url, "").await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("provider_unavailable")));
    let gw = gateway_for(&issuer.url, "id_token = \"optional\"").await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(issuer.stats().await["userinfo"], 1);
    let echo = get_with_cookie(&gw.url("/app"), &cookie_pair(&res)).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.test"]);
    assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["staff,admins"]);
}

const REFRESH: &str = "refresh = true\npass_access_token = true\nsession_ttl = \"1h\"";

fn bearer(echo: &Value) -> String {
    let all = echoed(echo, "authorization");
    assert_eq!(all.len(), 1, "one Authorization header: {all:?}");
    all[0].strip_prefix("Bearer ").unwrap_or_else(|| panic!("{all:?}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_renews_rotates_and_ends_with_invalid_grant() {
    // Tokens of 20 s are within 30 s of their end at once: every request renews.
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let gw = gateway_for(&issuer.url, REFRESH).await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    let cookie = cookie_pair(&res);
    // The session outlives the token: the cookie is for the session, not the token.
    let issued = issuer.control("issued").await["access_token"].as_str().unwrap().to_owned();
    let mut seen = vec![issued];
    for n in 1..=3 {
        let res = get_with_cookie(&gw.url("/app"), &cookie).await;
        assert_eq!(res.status, StatusCode::OK, "request {n}: {}", res.text());
        let token = bearer(&res.json());
        assert!(!seen.contains(&token), "request {n} carried an old access token");
        seen.push(token);
        // Each renewal spent the refresh token of the one before (rotation).
        assert_eq!(issuer.stats().await["refresh_token"], n);
        assert_eq!(issuer.control("last").await["client_auth"], "basic");
    }
    // Renewed tokens of an hour: concurrent requests share one renewal, then none is due.
    issuer.control("expires_in?value=3600").await;
    let app = gw.url("/app");
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { get_with_cookie(&app, &cookie).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for r in burst {
        let res = r.await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
        tokens.push(bearer(&res.json()));
    }
    assert_eq!(issuer.stats().await["refresh_token"], 4, "one renewal for the whole burst");
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every request of the burst carried the renewed token");
    assert_eq!(get_with_cookie(&app, &cookie).await.status, StatusCode::OK);
    assert_eq!(issuer.stats().await["refresh_token"], 4, "an hour-long token is not renewed");

    // The user is disabled at the provider: the next renewal ends the session.
    issuer.control("expires_in?value=20").await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    issuer.control("revoke?sub=u-alice").await;
    let res = get_with_cookie(&app, &cookie).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert!(res.header("location").starts_with("/login?destination="));
    let refreshes = issuer.stats().await["refresh_token"].as_u64().unwrap();
    assert_eq!(refreshes, 5);
    assert_eq!(get_with_cookie(&app, &cookie).await.status, StatusCode::SEE_OTHER);
    assert_eq!(issuer.stats().await["refresh_token"], refreshes, "an ended session is not renewed again");
}

/// A renewal that fails (the provider is down) keeps the session and gives
/// its claim back: the next request renews at once, neither waiting for a
/// renewal nobody is making nor going on without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_renewal_the_next_request_renews_at_once() {
    let issuer = Issuer::start(json!({"expires_in": 1}));
    let gw = gateway_for(&issuer.url, REFRESH).await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the 1 s token has expired
    issuer.control("expires_in?value=3600").await;
    issuer.control("fail?count=1").await;
    let res = get_with_cookie(&gw.url("/app"), &cookie).await;
    assert_eq!(res.status, StatusCode::OK, "a failed renewal keeps the session: {}", res.text());
    assert!(echoed(&res.json(), "authorization").is_empty(), "an expired token was sent");
    assert_eq!(issuer.stats().await["failed"], 1);
    // The provider is back: the next request renews, without waiting out the
    // failed renewal's claim (its limit is four timeouts, 8 s here).
    let started = Instant::now();
    let res = get_with_cookie(&gw.url("/app"), &cookie).await;
    let took = started.elapsed();
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(issuer.stats().await["refresh_token"], 1);
    assert_eq!(bearer(&res.json()), issuer.control("issued").await["access_token"].as_str().unwrap());
    assert!(took < Duration::from_secs(4), "waited {took:?} for a claim nobody was using");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresh_the_session_lasts_the_token_and_no_bearer_is_sent() {
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let gw = gateway_for(&issuer.url, "pass_access_token = false").await;
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    let cookie = res.header("set-cookie").to_owned();
    // Not persistent (no remember): no Max-Age. Renewal is off.
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    let echo = get_with_cookie(&gw.url("/app"), cookie.split(';').next().unwrap()).await.json();
    assert!(echoed(&echo, "authorization").is_empty());
    assert_eq!(issuer.stats().await["refresh_token"], 0);
    // pass_access_token without refresh: the token of the login.
    let gw = gateway_for(&issuer.url, "pass_access_token = true").await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    let issued = issuer.control("issued").await["access_token"].as_str().unwrap().to_owned();
    // A client's own Authorization is replaced, never forwarded next to ours.
    let req = Request::get(gw.url("/app"))
        .header("cookie", &cookie)
        .header("authorization", "Bearer forged-by-client")
        .body(Full::default())
        .unwrap();
    assert_eq!(bearer(&send(req).await.json()), issued);
    // Without a session (or with one whose token ended), a client's own never reaches the site either.
    let req = Request::get(gw.url("/public"))
        .header("authorization", "Bearer forged-by-client")
        .body(Full::default())
        .unwrap();
    assert!(echoed(&send(req).await.json(), "authorization").is_empty());
    // A site whose provider does not pass tokens leaves the client's Authorization alone.
    let gw = gateway_for(&issuer.url, "").await;
    let req =
        Request::get(gw.url("/public")).header("authorization", "Basic c2l0ZTpvd24=").body(Full::default()).unwrap();
    assert_eq!(echoed(&send(req).await.json(), "authorization"), vec!["Basic c2l0ZTpvd24="]);
    // Without renewal the session ends with its token: a 1 s token, a session of 1 s.
    issuer.control("expires_in?value=1").await;
    let gw = gateway_for(&issuer.url, "").await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    assert_eq!(get_with_cookie(&gw.url("/app"), &cookie).await.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = get_with_cookie(&gw.url("/app"), &cookie).await;
        if res.status == StatusCode::SEE_OTHER {
            assert!(res.header("location").starts_with("/login?destination="), "{}", res.header("location"));
            break;
        }
        assert!(Instant::now() < deadline, "the session outlived its 1 s token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issuer.stats().await["refresh_token"], 0);
}

/// `refresh = true` and an answer without a refresh token: nothing to renew
/// with, so the session lasts the token (not `session_ttl`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_a_refresh_token_lasts_the_token() {
    let issuer = Issuer::start(json!({}));
    let token =
        Mock::start(200, r#"{"access_token":"at","token_type":"Bearer","expires_in":120}"#, Duration::ZERO).await;
    let userinfo =
        Mock::start(200, r#"{"sub":"u-9","email":"nine@corp.test","email_verified":true}"#, Duration::ZERO).await;
    let overrides = format!(
        "{REFRESH}\nid_token = \"optional\"\ntoken_endpoint = \"http://{}/token\"\nuserinfo_endpoint = \"http://{}/userinfo\"",
        token.addr, userinfo.addr
    );
    let gw = gateway_for(&issuer.url, &overrides).await;
    let res =
        post_form(&gw.url("/login"), &[("email", "nine@corp.test"), ("password", "pw"), ("remember", "on")]).await;
    let max_age = res.max_age();
    assert!((110..=120).contains(&max_age), "the token's 120 s, not session_ttl's hour: {max_age}");
}

/// Renewal authenticates the client as the login did (`client_secret_post` here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_uses_the_configured_client_authentication() {
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let gw = gateway_for(&issuer.url, &format!("{REFRESH}\nclient_auth = \"client_secret_post\"")).await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    assert_eq!(get_with_cookie(&gw.url("/app"), &cookie).await.status, StatusCode::OK);
    assert_eq!(issuer.stats().await["refresh_token"], 1, "a 20 s token is renewed");
    let last = issuer.control("last").await;
    assert_eq!((last["grant_type"].as_str(), last["client_auth"].as_str()), (Some("refresh_token"), Some("post")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_renew_a_session_once() {
    let found = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "redis-server is not installed: run scripts/test (it installs it)");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let redis = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocketperm", "700", "--unixsocket"])
        .arg(&socket)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let _redis = Process(redis);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let store = format!("store = \"redis\"\nredis_url = \"redis+unix://{}\"", socket.display());
    let upstream = echo_upstream().await;
    let a = gateway(&config(&issuer.url, upstream, REFRESH, &store)).await;
    let b = gateway(&config(&issuer.url, upstream, REFRESH, &store)).await;
    let cookie = cookie_pair(&login(&a, "alice@corp.test", ALICE_PW).await);
    issuer.control("expires_in?value=3600").await;
    // Both replicas find the token due at the same moment.
    let (url_a, url_b) = (a.url("/app"), b.url("/app"));
    let (ra, rb) = tokio::join!(get_with_cookie(&url_a, &cookie), get_with_cookie(&url_b, &cookie));
    assert_eq!((ra.status, rb.status), (StatusCode::OK, StatusCode::OK), "{} / {}", ra.text(), rb.text());
    assert_eq!(issuer.stats().await["refresh_token"], 1, "two replicas renewed one session twice");
    // The renewed token was written back: both replicas now send it, without renewing.
    let renewed = issuer.control("issued").await["access_token"].as_str().unwrap().to_owned();
    for gw in [&a, &b] {
        assert_eq!(bearer(&get_with_cookie(&gw.url("/app"), &cookie).await.json()), renewed);
    }
    assert_eq!(issuer.stats().await["refresh_token"], 1);
}

#[test]
fn check_names_the_key_of_a_bad_oidc_table() {
    let base = |provider: &str| {
        format!(
            "[sessions]\nsecret = \"{SECRET}\"\n[providers.corp]\nkind = \"oidc\"\n{provider}\n\
             [[sites]]\nname = \"s\"\nupstream = \"http://127.0.0.1:9\"\nprovider = \"corp\"\n[sites.login]\npath = \"/login\"\n"
        )
    };
    let ok = "issuer = \"https://corp.okta.com/oauth2/default\"\nclient_id = \"c\"\nclient_secret = \"Oidc-Secret-77\"";
    assert!(ferrygate::from_toml(&base(ok), ".".as_ref()).is_ok());
    for (provider, key) in [
        (
            "issuer = \"http://idp.example\"\nclient_id = \"c\"\nclient_secret = \"Oidc-Secret-77\"",
            "providers.corp.issuer",
        ),
        (&format!("{ok}\nscope = \"email profile\""), "providers.corp.scope"),
        (&format!("{ok}\nclient_auth = \"private_key_jwt\""), "providers.corp.client_auth"),
        (&format!("{ok}\nid_token = \"maybe\""), "providers.corp.id_token"),
        (&format!("{ok}\ntoken_endpoint = \"http://idp.example/token\""), "providers.corp.token_endpoint"),
        ("issuer = \"https://idp.example\"\nclient_id = \"c\"", "providers.corp.client_secret"),
        (&format!("{ok}\nrefresh = \"yes\""), "providers.corp.refresh"),
        (&format!("{ok}\ncolour = 1"), "providers.corp.colour"),
    ] {
        let err = ferrygate::from_toml(&base(provider), ".".as_ref()).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("Oidc-Secret-77"), "the secret was quoted: {err}");
    }
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The password, the client secret (and its Basic form), the access, refresh
/// and ID tokens of every answer, and the session cookie never reach a log
/// line at TRACE (every crate), an answer, or a `Debug` output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_answers_or_debug_output() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let issuer = Issuer::start(json!({"expires_in": 20}));
    let gw = gateway_for(&issuer.url, REFRESH).await;
    let mut secrets = vec![ALICE_PW.to_owned(), CLIENT_SECRET.to_owned()];
    let basic = ferrygate::oidc::basic_credentials(CLIENT_ID, CLIENT_SECRET);
    secrets.push(basic.trim_start_matches("Basic ").to_owned());
    let mut answers = Vec::new();
    let res = login(&gw, "alice@corp.test", ALICE_PW).await;
    let cookie = cookie_pair(&res);
    secrets.push(cookie.split_once('=').unwrap().1.to_owned());
    answers.push(res.text());
    let issued = |v: Value| ["access_token", "refresh_token", "id_token"].map(|k| v[k].as_str().unwrap().to_owned());
    secrets.extend(issued(issuer.control("issued").await));
    // A renewal (new access, refresh and ID tokens), then the failures.
    assert_eq!(get_with_cookie(&gw.url("/app"), &cookie).await.status, StatusCode::OK);
    secrets.extend(issued(issuer.control("issued").await));
    for (user, password) in [("alice@corp.test", "Wrong-Pw-5521"), ("mfa@corp.test", "mfa-pw")] {
        secrets.push(password.to_owned());
        answers.push(login(&gw, user, password).await.text());
    }
    issuer.control("rotate").await;
    answers.push(login(&gw, "alice@corp.test", ALICE_PW).await.text());
    secrets.extend(issued(issuer.control("issued").await));
    issuer.control("rotate").await;
    let refused = login(&gw, "alice@corp.test", ALICE_PW).await;
    assert_eq!(refused.json()["error"], "provider_unavailable");
    answers.push(refused.text());
    let wrong = config(&issuer.url, echo_upstream().await, "", "")
        .replace(&format!("client_secret = \"{CLIENT_SECRET}\""), "client_secret = \"Other-Secret-8812\"");
    secrets.push("Other-Secret-8812".to_owned());
    answers.push(login(&gateway(&wrong).await, "alice@corp.test", ALICE_PW).await.text());

    let loaded = ferrygate::from_toml(&config(&issuer.url, echo_upstream().await, REFRESH, ""), ".".as_ref()).unwrap();
    let provider = &loaded.config.providers["corp"];
    let debug = format!("{:?} {provider:?} {:?}", loaded.config, loaded.config.sites);
    let grant = ferrygate::core::Grant::redirect("/app").with_refresh_token(Some(secrets[5].clone().into()));
    let session = ferrygate::core::Session {
        site: "corp".into(),
        provider: "corp".into(),
        user: "alice@corp.test".into(),
        user_id: None,
        org_id: None,
        external_id: None,
        groups: vec![],
        token: Some(secrets[4].clone()),
        token_type: "Bearer".into(),
        refresh_token: Some(secrets[5].clone()),
        token_expires_at_ms: None,
        expires_at_ms: 0,
    };
    let debug = format!("{debug} {grant:?} {session:?}");

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("ID token refused"), "the refusal is logged, with its reason");
    assert!(logged.contains("invalid_client"), "the client refusal is logged with its code");
    for secret in &secrets {
        assert!(!logged.contains(secret.as_str()), "a log line holds a secret ({secret})");
        for answer in &answers {
            assert!(!answer.contains(secret.as_str()), "an answer holds a secret ({secret}): {answer}");
        }
        assert!(!debug.contains(secret.as_str()), "a Debug output holds a secret ({secret}): {debug}");
    }
}

/// The real binary counts renewals on `/metrics`
/// (`ferrygate_token_refreshes_total{provider, outcome}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_are_counted_on_the_admin_metrics() {
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    let text = config(&issuer.url, echo_upstream().await, REFRESH, "");
    std::fs::write(&path, format!("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{text}"))
        .unwrap();
    let fg = start_logged(&["serve", "--log-format", "json", "--config"], &path, "info");
    let base = format!("http://{}", fg.addr);
    // The admin listener bound port 0; the "listening" line says where.
    let listening: Value = serde_json::from_str(fg.early.last().unwrap()).unwrap();
    let admin = listening["admin"].as_str().unwrap().to_owned();
    let cookie = cookie_pair(
        &post_json(&format!("{base}/login"), json!({"email": "alice@corp.test", "password": ALICE_PW})).await,
    );
    assert_eq!(get_with_cookie(&format!("{base}/app"), &cookie).await.status, StatusCode::OK);
    issuer.control("revoke?sub=u-alice").await;
    assert_eq!(get_with_cookie(&format!("{base}/app"), &cookie).await.status, StatusCode::SEE_OTHER);
    let text = get(&format!("http://{admin}/metrics")).await.text();
    for needle in [
        r#"ferrygate_token_refreshes_total{provider="corp",outcome="renewed"} 1"#,
        r#"ferrygate_token_refreshes_total{provider="corp",outcome="ended"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

/// A renewal's ID token signed by a key not yet to be had (the keys were
/// fetched again less than a minute ago) keeps the session and its renewed
/// tokens; and the forward-auth check renews like any request of the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_survive_a_key_rotation_and_happen_on_forward_auth_checks() {
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let text = format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n{}\n[sites.forward_auth]\npath = \"/_ferrygate/auth\"\n",
        config(&issuer.url, echo_upstream().await, REFRESH, "")
    );
    let gw = gateway(&text).await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    issuer.control("rotate").await; // the first unknown kid: fetched again
    assert_eq!(get_with_cookie(&gw.url("/app"), &cookie).await.status, StatusCode::OK);
    issuer.control("rotate").await; // the second, within the minute: not to be had
    let res = get_with_cookie(&gw.url("/app"), &cookie).await;
    assert_eq!(res.status, StatusCode::OK, "a key rotation ended the session: {}", res.text());
    let renewed = issuer.control("issued").await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer(&res.json()), renewed);
    assert_eq!(issuer.stats().await["refresh_token"], 2);
    // The forward-auth check renews too, and hands the proxy the current token.
    let req = Request::get(gw.url("/_ferrygate/auth"))
        .header("cookie", &cookie)
        .header("x-original-uri", "/app")
        .header("x-original-method", "GET")
        .body(Full::default())
        .unwrap();
    let res = send(req).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(issuer.stats().await["refresh_token"], 3);
    let renewed = issuer.control("issued").await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(res.header("authorization"), format!("Bearer {renewed}"));
}

/// How long a session lasts (SPEC 1.4): the token's `expires_in`, or, with
/// `refresh = true` and a refresh token, `session_ttl` — as a remembered
/// login's cookie says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lasts_expires_in_or_with_refresh_session_ttl() {
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let remembered = |gw: &Gateway| {
        let url = gw.url("/login");
        async move { post_form(&url, &[("email", "alice@corp.test"), ("password", ALICE_PW), ("remember", "on")]).await }
    };
    let gw = gateway_for(&issuer.url, "").await;
    let age = Answer::max_age(&remembered(&gw).await);
    assert!((15..=20).contains(&age), "without refresh the session lasts expires_in (20 s): {age}");
    let gw = gateway_for(&issuer.url, REFRESH).await;
    let age = Answer::max_age(&remembered(&gw).await);
    assert!((3590..=3600).contains(&age), "with refresh it lasts session_ttl (1h): {age}");
}

/// The client secret from `client_secret_file` (SPEC 6: every secret takes
/// `<key>_file`) authenticates like the inline one; both at once are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_may_come_from_a_file() {
    let issuer = Issuer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oidc-secret");
    std::fs::write(&file, format!("{CLIENT_SECRET}\n")).unwrap();
    let inline = format!("client_secret = \"{CLIENT_SECRET}\"");
    let text = config(&issuer.url, echo_upstream().await, "", "");
    let from_file = text.replace(&inline, &format!("client_secret_file = \"{}\"", file.display()));
    let res = login(&gateway(&from_file).await, "alice@corp.test", ALICE_PW).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(issuer.control("last").await["client_auth"], "basic");
    let both = text.replace(&inline, &format!("{inline}\nclient_secret_file = \"{}\"", file.display()));
    let err = ferrygate::from_toml(&format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{both}"), ".".as_ref())
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers.corp.client_secret"), "{err}");
    assert!(!err.contains(CLIENT_SECRET), "{err}");
}

/// SPEC 1.4: an unknown `crit`, a date that is no number (or a fractional
/// `nbf` still ahead) are refused; `email_verified` other than `true` names
/// nobody by the email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crit_headers_odd_dates_and_odd_email_verified_values_are_refused() {
    let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64 + 3600.5;
    let user = |name: &str, extra: Value| {
        let mut u = json!({"username": name, "password": "pw", "sub": format!("u-{name}"), "email": "ceo@corp.test"});
        for (k, v) in extra.as_object().unwrap() {
            u[k] = v.clone();
        }
        u
    };
    let issuer = Issuer::start(json!({"users": [
        user("plain", json!({})),
        user("crit", json!({"id_token_header": {"crit": ["x-ext"], "x-ext": 1}})),
        user("nbf-text", json!({"nbf": "later"})),
        user("nbf-float", json!({"nbf": later})),
        user("exp-text", json!({"exp": "never"})),
        user("iat-text", json!({"iat": "now"})),
        user("ev-zero", json!({"email_verified": 0})),
        user("ev-zero-text", json!({"email_verified": "0"})),
        user("ev-no", json!({"email_verified": "no"})),
        user("ev-true-text", json!({"email_verified": "true"})),
        user("ev-true", json!({"email_verified": true})),
        user("padded", json!({"email": " padded@corp.test ", "groups": [" admins", "staff", "ops "]})),
    ]}));
    let gw = gateway_for(&issuer.url, "").await;
    for name in ["crit", "nbf-text", "nbf-float", "exp-text", "iat-text"] {
        let res = login(&gw, name, "pw").await;
        assert_eq!(
            (res.status, res.json()["error"].as_str()),
            (StatusCode::BAD_GATEWAY, Some("provider_unavailable")),
            "{name}"
        );
    }
    for (name, named) in [
        ("plain", "ceo@corp.test"),
        ("ev-true", "ceo@corp.test"),
        ("ev-zero", "u-ev-zero"),
        ("ev-zero-text", "u-ev-zero-text"),
        ("ev-no", "u-ev-no"),
        ("ev-true-text", "u-ev-true-text"),
    ] {
        let res = login(&gw, name, "pw").await;
        assert_eq!(res.status, StatusCode::OK, "{name}: {}", res.text());
        let echo = get_with_cookie(&gw.url("/app"), &cookie_pair(&res)).await.json();
        assert_eq!(echoed(&echo, "x-ferrygate-user"), vec![named], "{name}");
    }
    // SPEC 2: a group with outer whitespace is dropped (HTTP would trim it to
    // `admins` for the site while the rule saw ` admins`); the user is trimmed.
    let padded = cookie_pair(&login(&gw, "padded", "pw").await);
    let echo = get_with_cookie(&gw.url("/app"), &padded).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["padded@corp.test"]);
    assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["staff"]);
    assert_eq!(get_with_cookie(&gw.url("/admin"), &padded).await.status, StatusCode::FORBIDDEN);
}

/// SPEC 1.4: a user removed from a group loses it at the next renewal, also
/// when the renewed ID token leaves the groups claim out (userinfo, which
/// has none either, then says: no groups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_removed_at_the_provider_is_lost_at_the_next_renewal() {
    // Tokens of 20 s are within 30 s of their end at once: every request renews.
    let issuer = Issuer::start(json!({"expires_in": 20}));
    let gw = gateway_for(&issuer.url, REFRESH).await;
    let cookie = cookie_pair(&login(&gw, "alice@corp.test", ALICE_PW).await);
    let groups = |echo: &Value| echoed(echo, "x-ferrygate-groups");
    assert_eq!(groups(&get_with_cookie(&gw.url("/app"), &cookie).await.json()), vec!["staff,admins"]);
    issuer.control("groups?sub=u-alice&value=staff").await;
    assert_eq!(groups(&get_with_cookie(&gw.url("/app"), &cookie).await.json()), vec!["staff"]);
    assert_eq!(get_with_cookie(&gw.url("/admin"), &cookie).await.status, StatusCode::FORBIDDEN);
    issuer.control("groups?sub=u-alice&value=").await;
    let echo = get_with_cookie(&gw.url("/app"), &cookie).await.json();
    assert!(groups(&echo).is_empty(), "groups kept after the claim went: {:?}", groups(&echo));
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.test"], "still signed in");
}
