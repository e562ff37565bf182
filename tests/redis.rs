//! Two Ferrygate instances sharing one real Redis (on a Unix socket in a temp
//! dir): a login on one is honoured by the other, a logout on either ends it
//! everywhere, nothing in Redis is a usable cookie, and an outage is a clear
//! 503 that heals by itself. Needs `redis-server`: without it these tests
//! fail with a message saying so (`scripts/test` installs it).

use ferrygate_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

struct Redis {
    child: Child,
    socket: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, socket }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// redis-server must be here: a missing one fails the test
/// with a message rather than passing it unrun (`scripts/test` installs it).
fn require_redis() {
    let found = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "redis-server is not installed: run scripts/test (it installs it), or apt-get install -y redis-server"
    );
}

fn config(provider: std::net::SocketAddr, upstream: std::net::SocketAddr, redis_url: &str) -> String {
    qwyk_config(provider, upstream, "", "protected_paths = [\"/account\"]").replace(
        "cookie_secure = false\n",
        &format!("cookie_secure = false\nstore = \"redis\"\nredis_url = \"{redis_url}\"\n"),
    )
}

const TOKEN: &str = r#"{"access_token":"tok-shared","token_type":"bearer","expires_in":600}"#;

#[tokio::test]
async fn replicas_share_sessions_and_survive_an_outage() {
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let cfg = config(mock.addr, upstream, &redis.url());
    let (a, b) = (gateway(&cfg).await, gateway(&cfg).await);

    // A login on A is honoured by B.
    let login = post_form(&a.url("/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = cookie_pair(&login);
    let on_b = get_with_cookie(&b.url("/login"), &cookie).await;
    assert_eq!(on_b.status, StatusCode::SEE_OTHER);
    assert_eq!(param(&on_b.location(), "token").as_deref(), Some("tok-shared"));
    let echo = get_with_cookie(&b.url("/account"), &cookie).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@example.com"]);

    // What Redis holds: hashed keys with the session's TTL, no cookie id anywhere.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("ferrygate:session:*").query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 1);
    let id = cookie.split_once('=').unwrap().1;
    let stored: String = redis::cmd("GET").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    for part in [&id[..20], &id[id.len() - 20..]] {
        assert!(!keys[0].contains(part) && !stored.contains(part), "a cookie fragment is stored in redis");
    }
    let ttl_ms: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    assert!((590_000..=600_000).contains(&ttl_ms), "{ttl_ms}");

    // Logout on B ends it on A.
    assert_eq!(get_with_cookie(&b.url("/portal-logout"), &cookie).await.status, StatusCode::SEE_OTHER);
    assert_eq!(get_with_cookie(&a.url("/login"), &cookie).await.status, StatusCode::OK);
    assert_eq!(get_with_cookie(&a.url("/account"), &cookie).await.status, StatusCode::SEE_OTHER);

    // Redis goes away: logins answer 503 session_store_unavailable within seconds;
    // a protected page with a cookie fails closed.
    let fresh = cookie_pair(&post_form(&a.url("/login"), &[("email", "bob@example.com"), ("password", "pw")]).await);
    redis.stop();
    let started = Instant::now();
    let res = post_json(&a.url("/login"), serde_json::json!({"email": "bob@example.com", "password": "pw"})).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.json()["error"], "session_store_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let res = post_form(&a.url("/login"), &[("email", "bob@example.com"), ("password", "pw")]).await;
    assert_eq!(param(&res.location(), "error").as_deref(), Some("session_store_unavailable"));
    let res = send(Request::get(b.url("/account")).header("cookie", &fresh).body(Full::default()).unwrap()).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    // A signed-in user's login page is not answered with the form while the store is away.
    let res = send(Request::get(b.url("/login")).header("cookie", &fresh).body(Full::default()).unwrap()).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text());
    // A public page still reaches the site, without identity.
    let res = send(Request::get(b.url("/about")).header("cookie", &fresh).body(Full::default()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(echoed(&res.json(), "x-ferrygate-user").is_empty());

    // Redis comes back (empty, as after a restart without persistence): both recover by themselves.
    let _redis = Redis::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(15);
    let cookie = loop {
        let res = post_form(&a.url("/login"), &[("email", "carol@example.com"), ("password", "pw")]).await;
        if res.location().host_str() == Some("portal.acme.example") {
            break cookie_pair(&res);
        }
        assert!(Instant::now() < deadline, "no recovery after redis came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_with_cookie(&b.url("/login"), &cookie).await.status != StatusCode::SEE_OTHER {
        assert!(Instant::now() < deadline, "replica B did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn replicas_count_brute_force_limits_together() {
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let mock = Mock::start(401, "{}", Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let cfg = format!(
        "{}\n[limits]\nlogin_per_ip = \"4/min\"\nlogin_per_account = \"2/min\"\n",
        config(mock.addr, upstream, &redis.url())
    );
    let (a, b) = (gateway(&cfg).await, gateway(&cfg).await);
    // Two failures for one account, one on each replica: the third attempt is refused on either.
    for gw in [&a, &b] {
        let res =
            post_json(&gw.url("/login"), serde_json::json!({"email": "Eve@x.example", "password": "guess"})).await;
        assert_eq!(res.json()["error"], "invalid_credentials");
    }
    let res = post_json(&a.url("/login"), serde_json::json!({"email": " eve@X.example", "password": "guess"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.text());
    assert!(res.header("retry-after").parse::<u64>().unwrap() >= 1);
    // The address has used 3 of its 4 login POSTs across both replicas: one more, then 429.
    let res = post_json(&b.url("/login"), serde_json::json!({"email": "other@x.example", "password": "guess"})).await;
    assert_eq!(res.json()["error"], "invalid_credentials");
    let res = post_json(&a.url("/login"), serde_json::json!({"email": "third@x.example", "password": "guess"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn readiness_follows_the_store() {
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let upstream = echo_upstream().await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        config("127.0.0.1:9".parse().unwrap(), upstream, &redis.url())
    );
    let config = ferrygate::from_toml(&toml, ".".as_ref()).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let readyz = format!("http://{}/readyz", server.admin_addr().unwrap());
    tokio::spawn(server.run(std::future::pending()));

    assert_eq!(get(&readyz).await.status, StatusCode::OK);
    redis.stop();
    let started = Instant::now();
    let res = get(&readyz).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.text().trim(), "session store unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "readiness answered in {:?}", started.elapsed());
    let _redis = Redis::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&readyz).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Payway that grants every login (token and login endpoints only).
async fn payway() -> std::net::SocketAddr {
    serve(|req: Request<hyper::body::Incoming>| async move {
        let body = match req.uri().path() {
            "/oauth2/token" => r#"{"access_token":"svc","expires_in":3600}"#,
            "/oauth2/login" => r#"{"status":"ok","result":"login-handle"}"#,
            _ => "{}",
        };
        http::Response::builder().header("content-type", "application/json").body(full(body)).unwrap()
    })
    .await
}

#[tokio::test]
async fn a_payway_state_is_single_use_across_replicas() {
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let upstream = echo_upstream().await;
    let cfg = format!(
        r#"
[sessions]
secret = "{SECRET}"
cookie_secure = false
store = "redis"
redis_url = "{url}"

[providers.news]
kind = "payway"
server = "http://{payway}"
client_id = "id"
client_secret = "payway-client-secret"
oid = "o"
redirect_uri = "https://news.example/landing"

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
"#,
        url = redis.url(),
        payway = payway().await,
    );
    let (a, b) = (gateway(&cfg).await, gateway(&cfg).await);
    let login = post_form(&a.url("/login"), &[("email", "r@news.example"), ("password", "pw")]).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let state = param(&login.location(), "state").unwrap();
    let state_cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("ferrygate_session_state="))
        .unwrap();
    let callback = |gw: &Gateway| {
        Request::get(gw.url(&format!("/landing?code=c&state={state}")))
            .header("cookie", &state_cookie)
            .body(Full::default())
            .unwrap()
    };
    // The state is accepted once, on B …
    assert_eq!(send(callback(&b)).await.status, StatusCode::OK);
    // … and replayed on A (a stolen cookie, another replica) it is refused.
    let replay = send(callback(&a)).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN, "a used state was accepted by another replica");
    assert_eq!(replay.text().trim(), "state_mismatch");
    // Recorded under a keyed hash, for the state cookie's lifetime.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("ferrygate:used-state:*").query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains(&state), "the state itself is a key");
    let ttl_ms: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    assert!((590_000..=600_000).contains(&ttl_ms), "{ttl_ms}");
}

/// The store's `update` (a renewed session written back) is `SET … XX`: it
/// replaces a stored session and never brings back one that ended — a logout
/// on another replica during a renewal stays a logout.
#[tokio::test]
async fn an_update_never_brings_a_session_back_and_a_released_key_is_fresh() {
    use ferrygate::core::session::{Mark, Session, SessionStore, StoreKey};
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let store = ferrygate_store_redis::RedisStore::new(&redis.url().into()).unwrap();
    // A live session of `user` (the stored form: the rest takes its defaults).
    let session = |user: &str| -> Session {
        let expires = ferrygate::core::session::now_ms() + 60_000;
        serde_json::from_value(serde_json::json!({"s": "s", "p": "p", "u": user, "e": expires})).unwrap()
    };
    let key = StoreKey([7; 32]);
    let ttl = Duration::from_secs(60);
    assert!(!store.update(&key, &session("a"), ttl).await.unwrap(), "nothing stored: no update");
    assert!(store.get(&key).await.unwrap().is_none(), "an update created the session");
    store.insert(&key, &session("a"), ttl).await.unwrap();
    assert!(store.update(&key, &session("b"), ttl).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap().unwrap().user, "b");
    store.remove(&key).await.unwrap();
    assert!(!store.update(&key, &session("c"), ttl).await.unwrap(), "a removed session came back");
    assert!(store.get(&key).await.unwrap().is_none());
    // A one-time key (a state, a renewal's claim) is used once, until released.
    for mark in [Mark::State, Mark::Renewal] {
        assert!(store.use_once(mark, &key, ttl).await.unwrap());
        assert!(!store.use_once(mark, &key, ttl).await.unwrap(), "used twice");
    }
    store.release(Mark::Renewal, &key).await.unwrap();
    assert!(store.use_once(Mark::Renewal, &key, ttl).await.unwrap(), "a released key is fresh again");
    assert!(!store.use_once(Mark::State, &key, ttl).await.unwrap(), "a release of one kind freed another");
}

/// SPEC 2: a logout the store cannot do (Redis read-only, as a replica is
/// during a failover) is never a success: 503 `session_store_unavailable` in
/// every answer mode, the cookie expired all the same.
#[tokio::test]
async fn a_logout_the_store_cannot_do_is_503_never_a_success() {
    require_redis();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let gw = gateway(&config(mock.addr, echo_upstream().await, &redis.url())).await;
    let login = post_form(&gw.url("/login"), &[("email", "alice@example.com"), ("password", "pw")]).await;
    let cookie = cookie_pair(&login);
    // Read-only: a replica of a primary that is not there (its data kept, served stale).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(closed).query_async(&mut conn).await.unwrap();
    assert_eq!(get_with_cookie(&gw.url("/account"), &cookie).await.status, StatusCode::OK, "reads still work");
    for accept in ["text/html", "application/json"] {
        let res = send(
            Request::get(gw.url("/portal-logout"))
                .header("cookie", &cookie)
                .header("accept", accept)
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{accept}: {}", res.text());
        assert!(res.text().contains("session_store_unavailable"), "{accept}: {}", res.text());
        assert!(res.header("set-cookie").contains("Max-Age=0"), "the cookie goes all the same");
    }
    // The session really is still there: nothing said it was ended.
    assert_eq!(get_with_cookie(&gw.url("/account"), &cookie).await.status, StatusCode::OK);
    // Writable again: the logout succeeds.
    let _: () = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async(&mut conn).await.unwrap();
    let res = get_with_cookie(&gw.url("/portal-logout"), &cookie).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(get_with_cookie(&gw.url("/account"), &cookie).await.status, StatusCode::SEE_OTHER);
}
