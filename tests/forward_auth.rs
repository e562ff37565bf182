//! Forward authentication (SPEC 2.1) beside a real nginx (`auth_request`) and
//! a real Caddy (`forward_auth`), each loading the shipped files in
//! `deploy/examples/forward-auth/` with only addresses substituted, driven as
//! a browser would; plus Traefik's and Envoy's request styles at the header
//! level. Needs nginx and caddy (`scripts/test` installs them).
//!
//! Longer than 400 lines on purpose: spec 2.1's sources, styles and answers,
//! behind real nginx and Caddy, one case each.

use ferrygate_testkit as common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

fn shipped(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/forward-auth").join(name))
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Env {
    ferrygate: SocketAddr,
    site: SocketAddr,
    _mock: Mock,
    _dir: tempfile::TempDir,
}

/// Ferrygate from the shipped `ferrygate.toml` (its provider's URL and
/// directory pointed at test doubles), on a free port.
async fn ferrygate(redirect: bool, trusted: &str, style: &str) -> Env {
    ferrygate_with(redirect, trusted, style, "").await
}

/// As [`ferrygate`], with `extra` appended to the shipped `ferrygate.toml`.
async fn ferrygate_with(redirect: bool, trusted: &str, style: &str, extra: &str) -> Env {
    let mock = Mock::start(200, "{}", Duration::ZERO).await;
    let site = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    std::fs::write(
        &users,
        "email,user_id,external_id,org_id,groups\nalice@corp.example,1,,7,admins\nbob@corp.example,2,,7,staff\n\
         carol@corp.example,3,,,\n",
    )
    .unwrap();
    let text = (shipped("ferrygate.toml") + extra)
        .replace("listen = [\"127.0.0.1:9000\"]", "listen = [\"127.0.0.1:0\"]")
        .replace("trusted_proxies = [\"127.0.0.1/32\"]", &format!("trusted_proxies = [\"{trusted}\"]"))
        .replace("https://auth.corp.example/check", &format!("http://{}/check", mock.addr))
        .replace("users = \"../users.csv\"", &format!("users = \"{}\"", users.display()))
        .replace("http://127.0.0.1:3000", &format!("http://{site}"))
        .replace("redirect = false", &format!("redirect = {redirect}"))
        .replace("style = \"nginx\"", &format!("style = \"{style}\""))
        .replace("[sessions]", "[limits]\nlogin_per_ip = \"100000/min\"\n\n[sessions]\ncookie_secure = false");
    let vars = |name: &str| (name == "FERRYGATE_SESSION_SECRET").then(|| SECRET.to_owned());
    let config = ferrygate::Config::from_toml_with_vars(&text, dir.path(), &ferrygate::kinds(), &vars)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let ferrygate = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    Env { ferrygate, site, _mock: mock, _dir: dir }
}

/// A proxy process; killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM, so nginx's master takes its workers down with it (SIGKILL would orphan them).
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn substitute(text: &str, env: &Env, port: u16) -> String {
    text.replace("127.0.0.1:9000", &env.ferrygate.to_string())
        .replace("127.0.0.1:3000", &env.site.to_string())
        .replace("8080", &port.to_string())
}

fn nginx(env: &Env) -> Proxy {
    nginx_from(env, &shipped("nginx.conf"))
}

fn nginx_from(env: &Env, shipped_conf: &str) -> Proxy {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists());
    let bin = bin.expect("nginx is not installed: run scripts/test (it installs nginx)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let snippet = substitute(shipped_conf, env, port)
        .replace("listen ", "listen 127.0.0.1:")
        .replace("127.0.0.1:127.0.0.1:", "127.0.0.1:");
    let conf = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{snippet}\n}}\n"
    );
    let path: PathBuf = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(bin).arg("-p").arg(dir.path()).arg("-c").arg(&path).stderr(Stdio::null()).spawn().unwrap();
    wait_for(port, "nginx");
    Proxy { child, port, _dir: dir }
}

fn caddy(env: &Env) -> Proxy {
    caddy_from(env, &shipped("Caddyfile"))
}

fn caddy_from(env: &Env, shipped_conf: &str) -> Proxy {
    assert!(Path::new("/usr/bin/caddy").exists(), "caddy is not installed: run scripts/test (it installs caddy)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Global options for a test: no admin endpoint, no HTTPS, state in the temp dir.
    let conf = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n\n{}",
        dir.path().display(),
        substitute(shipped_conf, env, port)
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("/usr/bin/caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port, "caddy");
    Proxy { child, port, _dir: dir }
}

fn request(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Request<Full<bytes::Bytes>> {
    let mut r = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        // As a browser sends them: the port in Host, and a form post's Origin.
        .header("host", format!("intranet.corp.example:{port}"))
        .header("x-ferrygate-user", "mallory@evil.example")
        .header("x-ferrygate-groups", "admins");
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    if body.is_some() {
        r = r
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", format!("http://intranet.corp.example:{port}"))
            .header("sec-fetch-site", "same-origin");
    }
    r.body(Full::new(bytes::Bytes::from(body.unwrap_or_default().to_owned()))).unwrap()
}

/// The browser's path through a proxy in front: the page, the login form, the
/// login POST, the page with identity, the admin rule, logout.
async fn browse(port: u16, redirect_by: &str) {
    let page = send(request(port, "GET", "/page?x=1", None, None)).await;
    assert_eq!(page.status, StatusCode::FOUND, "{redirect_by}: {}", page.text());
    // nginx makes its redirect absolute; Ferrygate's (Caddy) is a path.
    let location = page.location();
    let to = format!("{}?{}", location.path(), location.query().unwrap_or(""));
    assert!(to == "/login?destination=/page?x=1" || to == "/login?destination=%2Fpage%3Fx%3D1", "{redirect_by}: {to}");
    let form = send(request(port, "GET", "/login", None, None)).await;
    assert_eq!(form.status, StatusCode::OK, "the site's own login page through Ferrygate");
    let login = send(request(port, "POST", "/login", None, Some("email=alice%40corp.example&password=pw"))).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    let alice = cookie_pair(&login);
    let echo = send(request(port, "GET", "/page", Some(&alice), None)).await;
    assert_eq!(echo.status, StatusCode::OK);
    let echo = echo.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.example"], "{redirect_by}");
    assert_eq!(echoed(&echo, "x-ferrygate-groups"), vec!["admins"]);
    // The session cookie's value never reaches the site (SPEC 2.1).
    let session_value = alice.split_once('=').unwrap().1;
    assert!(!echoed(&echo, "cookie").concat().contains(session_value), "{redirect_by}: the site got the session");
    assert_eq!(send(request(port, "GET", "/admin", Some(&alice), None)).await.status, StatusCode::OK);
    // A user without groups or organisation: the site gets nothing made up.
    let carol =
        cookie_pair(&send(request(port, "POST", "/login", None, Some("email=carol%40corp.example&password=pw"))).await);
    let echo = send(request(port, "GET", "/page", Some(&carol), None)).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["carol@corp.example"]);
    for name in ["x-ferrygate-groups", "x-ferrygate-org-id"] {
        assert!(echoed(&echo, name).iter().all(String::is_empty), "{redirect_by}: {name}: {:?}", echoed(&echo, name));
    }
    // Bob: staff only. The rule shuts him out through the proxy, and the
    // `admins` group his client claims never reaches the site.
    let bob =
        cookie_pair(&send(request(port, "POST", "/login", None, Some("email=bob%40corp.example&password=pw"))).await);
    assert_eq!(send(request(port, "GET", "/ADMIN", Some(&bob), None)).await.status, StatusCode::FORBIDDEN);
    let echo = send(request(port, "GET", "/page", Some(&bob), None)).await.json();
    assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["bob@corp.example"]);
    assert_eq!(
        echoed(&echo, "x-ferrygate-groups"),
        vec!["staff"],
        "{redirect_by}: the client-sent group reached the site"
    );
    // Logout through the proxy ends the session: the page asks to sign in again.
    let out = send(request(port, "GET", "/logout", Some(&alice), None)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(send(request(port, "GET", "/page", Some(&alice), None)).await.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_nginx_with_auth_request() {
    let env = ferrygate(false, "127.0.0.1/32", "nginx").await;
    let nginx = nginx(&env);
    browse(nginx.port, "nginx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_caddy_with_forward_auth_and_redirect() {
    let env = ferrygate(true, "127.0.0.1/32", "forwarded").await;
    let caddy = caddy(&env);
    browse(caddy.port, "caddy").await;
}

fn check(env: &Env, path: &str, headers: &[(&str, &str)], cookie: Option<&str>) -> Request<Full<bytes::Bytes>> {
    let mut r = Request::get(format!("http://{}{path}", env.ferrygate)).header("host", env.ferrygate.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.body(Full::default()).unwrap()
}

async fn sign_in(env: &Env, email: &str) -> String {
    let login = send(
        Request::post(format!("http://{}/login", env.ferrygate))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(bytes::Bytes::from(format!("email={}&password=pw", email.replace('@', "%40")))))
            .unwrap(),
    )
    .await;
    cookie_pair(&login)
}

#[tokio::test]
async fn traefik_and_envoy_request_styles() {
    let env = ferrygate(true, "127.0.0.1/32", "auto").await;
    let alice = sign_in(&env, "alice@corp.example").await;
    let bob = sign_in(&env, "bob@corp.example").await;
    // Traefik: Ferrygate's own address as Host, the original in X-Forwarded-*.
    let traefik = |uri: &'static str| {
        [("x-forwarded-method", "GET"), ("x-forwarded-uri", uri), ("x-forwarded-host", "intranet.corp.example")]
    };
    let ok = send(check(&env, "/_ferrygate/auth", &traefik("/page"), Some(&alice))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-ferrygate-user"), "alice@corp.example");
    assert_eq!(ok.header("cache-control"), "no-store");
    assert!(ok.body.is_empty());
    let res = send(check(&env, "/_ferrygate/auth", &traefik("/%61dmin;x"), Some(&bob))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "the original URI is matched on its canonical path");
    let res = send(check(&env, "/_ferrygate/auth", &traefik("/page?a=1&b=2"), None)).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.header("location"), "/login?destination=%2Fpage%3Fa%3D1%26b%3D2");
    // Envoy ext_authz with path_prefix: the original path follows the check's.
    let res = send(check(&env, "/_ferrygate/auth/admin/users", &[], Some(&bob))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = send(check(&env, "/_ferrygate/auth/admin/users", &[], Some(&alice))).await;
    assert_eq!(res.status, StatusCode::OK);
    // Two sources that disagree (a client can add the other proxy's header): 400.
    let mut both = traefik("/admin").to_vec();
    both.push(("x-original-uri", "/"));
    let res = send(check(&env, "/_ferrygate/auth", &both, Some(&bob))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // The check is never proxied, whatever its spelling.
    let res = send(check(&env, "/_FERRYGATE/auth/", &traefik("/page"), Some(&alice))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.is_empty());
}

#[tokio::test]
async fn a_check_from_an_untrusted_peer_is_403() {
    let env = ferrygate(false, "10.0.0.0/8", "nginx").await;
    let alice = sign_in(&env, "alice@corp.example").await;
    let res = send(check(&env, "/_ferrygate/auth", &[("x-original-uri", "/page")], Some(&alice))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.headers.get("x-ferrygate-user").is_none());
}

#[tokio::test]
async fn without_a_session_the_check_is_401_and_calls_nothing() {
    let env = ferrygate(false, "127.0.0.1/32", "nginx").await;
    let alice = sign_in(&env, "alice@corp.example").await;
    let provider_calls = env._mock.seen.lock().unwrap().len();
    assert_eq!(provider_calls, 1, "the sign-in asked the provider once");
    // nginx auth_request style: the original request in X-Original-*.
    let nginx = [("x-original-method", "GET"), ("x-original-uri", "/page")];
    let res = send(check(&env, "/_ferrygate/auth", &nginx, None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header("cache-control"), "no-store");
    assert_eq!(res.text(), "unauthenticated\n", "a short text, never the site's page");
    assert!(res.headers.get("x-ferrygate-user").is_none());
    let res = send(check(&env, "/_ferrygate/auth", &nginx, Some("ferrygate_session=not-a-session"))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    for _ in 0..3 {
        let res = send(check(&env, "/_ferrygate/auth", &nginx, Some(&alice))).await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.body.is_empty(), "the check reached the site: {:?}", res.body);
    }
    // Checks never call the provider.
    assert_eq!(env._mock.seen.lock().unwrap().len(), provider_calls);
}

/// The check's site is the one the original host names: `X-Forwarded-Host`
/// (from a trusted proxy), else `Host` — and a session counts only there.
#[tokio::test]
async fn the_check_answers_for_the_site_the_forwarded_host_names() {
    let mock = Mock::start(200, r#"{"access_token":"t","token_type":"bearer","expires_in":600}"#, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let site = |name: &str| {
        format!(
            "[[sites]]\nname = \"{name}\"\nhosts = [\"{name}.test\"]\nupstream = \"http://{upstream}\"\nprovider = \"p\"\n\
             [sites.login]\npath = \"/login\"\n[sites.portal]\nurl = \"https://portal.example/in\"\n\
             [sites.forward_auth]\npath = \"/_ferrygate/auth\"\n"
        )
    };
    let toml = format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n[sessions]\nsecret = \"{SECRET}\"\ncookie_secure = false\n\
         [providers.p]\nkind = \"qwyk\"\nserver = \"http://{}\"\norganization_id = 1\nsite_id = 2\n{}{}{}",
        mock.addr,
        site("a"),
        site("b"),
        // A site without forward authentication, whose upstream (an echo) answers 200 to anything.
        site("c").split("[sites.forward_auth]").next().unwrap()
    );
    let gw = gateway(&toml).await;
    let login = send(
        Request::post(gw.url("/login"))
            .header("host", "a.test")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(bytes::Bytes::from("email=alice%40corp.example&password=pw")))
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    let cookie = cookie_pair(&login);
    let ask = |host: &str, forwarded: Option<&str>| {
        let mut r = Request::get(gw.url("/_ferrygate/auth"))
            .header("host", host)
            .header("cookie", cookie.as_str())
            .header("x-original-uri", "/page");
        if let Some(f) = forwarded {
            r = r.header("x-forwarded-host", f);
        }
        r.body(Full::default()).unwrap()
    };
    // The proxy asks Ferrygate under one name; the original host decides.
    let allowed = send(ask("b.test", Some("a.test"))).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.header("x-ferrygate-user"), "alice@corp.example");
    assert_eq!(send(ask("a.test", Some("b.test"))).await.status, StatusCode::UNAUTHORIZED);
    // Without X-Forwarded-Host, Host names the site.
    let allowed = send(ask("a.test", None)).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.header("x-ferrygate-user"), "alice@corp.example");
    assert_eq!(send(ask("b.test", None)).await.status, StatusCode::UNAUTHORIZED);
    // A check for a site that answers none is 404, never proxied to that
    // site (whose catch-all 200 would read as "allowed").
    let res = send(ask("a.test", Some("c.test"))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    assert_eq!(send(ask("c.test", None)).await.status, StatusCode::NOT_FOUND);
}

/// SPEC 2.2: `networks` read the client from a trusted proxy's
/// `X-Forwarded-For` only; an untrusted peer's own copy is never believed.
#[tokio::test]
async fn an_untrusted_peers_x_forwarded_for_never_opens_a_network_rule() {
    let rules = "\n[[sites.authorize]]\npaths = [\"/ops\"]\nnetworks = [\"10.0.0.0/8\"]\n\
                 \n[[sites.authorize]]\npaths = [\"/local\"]\nnetworks = [\"127.0.0.0/8\"]\n";
    // 127.0.0.1 (this test) is not a trusted proxy here.
    let env = ferrygate_with(false, "192.0.2.1/32", "auto", rules).await;
    let alice = sign_in(&env, "alice@corp.example").await;
    let get = |path: &'static str, xff: &'static str| {
        let req = Request::get(format!("http://{}{path}", env.ferrygate))
            .header("cookie", alice.as_str())
            .header("accept", "application/json")
            .header("x-forwarded-for", xff)
            .body(Full::default())
            .unwrap();
        async move { send(req).await.status }
    };
    assert_eq!(get("/ops", "10.9.9.9").await, StatusCode::FORBIDDEN);
    assert_eq!(get("/local", "10.9.9.9").await, StatusCode::OK, "the peer's own address is the client");
}

/// Sends a raw request line (a fragment, which no client library sends) and
/// returns the whole answer.
async fn raw(port: u16, target: &str, host: &str, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await.expect("no answer").unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// A second site on the same Ferrygate, for a session of the wrong site.
const PUBLIC_SITE: &str = r#"
[[sites]]
name = "public"
hosts = ["public.test"]
upstream = "http://127.0.0.1:3000"
provider = "corp-rest"

[sites.login]
path = "/login"

[sites.portal]
default_destination = "/"
allowed_destinations = ["/"]

[sites.forward_auth]
path = "/_ferrygate/auth"
"#;

/// The red team's attacks through the shipped nginx example (SPEC 2, 2.1):
/// encoded separators, dot segments and a fragment never pass a rule, and a
/// client's X-Forwarded-Host never chooses the site whose session counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_through_nginx_never_pass_a_rule_or_choose_the_site() {
    let env = ferrygate_with(false, "127.0.0.1/32", "nginx", PUBLIC_SITE).await;
    let nginx = nginx(&env);
    let port = nginx.port;
    let bob =
        cookie_pair(&send(request(port, "POST", "/login", None, Some("email=bob%40corp.example&password=pw"))).await);
    assert_eq!(send(request(port, "GET", "/admin/users/7", Some(&bob), None)).await.status, StatusCode::FORBIDDEN);
    for path in [
        "/admin/users/7%2F..%2F..%2F..%2Fx",
        "/admin/users/7%5C..%5C..%5C..%5Cx",
        "/admin/files/x/../../../public",
        "/admin/files/x/%2e%2e/%2E%2E/%2e%2e/public",
    ] {
        let res = send(request(port, "GET", path, Some(&bob), None)).await;
        // The check's 400 is nginx's 500 (auth_request passes only 401 and 403 on).
        assert!(matches!(res.status.as_u16(), 400 | 403 | 500), "{path}: {} {}", res.status, res.text());
        assert!(!res.text().contains("x-ferrygate-user"), "{path}: the site answered");
    }
    let answer = raw(port, "/admin#frag", "intranet.corp.example", &bob).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // A session of public.test, and a client naming that site to the check.
    let login = send(
        Request::post(format!("http://127.0.0.1:{port}/login"))
            .header("host", "public.test")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(bytes::Bytes::from("email=alice%40corp.example&password=pw")))
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    let public = cookie_pair(&login);
    let mut req = request(port, "GET", "/admin/secret", Some(&public), None);
    req.headers_mut().insert("x-forwarded-host", "public.test".parse().unwrap());
    let res = send(req).await;
    assert_eq!(res.status, StatusCode::FOUND, "another site's session opened the intranet: {}", res.text());
}

/// The shipped nginx example removes Ferrygate's session cookie before the
/// site and keeps the site's own cookies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_keeps_the_session_cookie_from_the_site() {
    let env = ferrygate(false, "127.0.0.1/32", "nginx").await;
    let nginx = nginx(&env);
    let alice = cookie_pair(
        &send(request(nginx.port, "POST", "/login", None, Some("email=alice%40corp.example&password=pw"))).await,
    );
    for cookies in [alice.clone(), format!("theme=dark; {alice}; lang=en"), format!("{alice}; theme=dark")] {
        let echo = send(request(nginx.port, "GET", "/page", Some(&cookies), None)).await.json();
        assert_eq!(echoed(&echo, "x-ferrygate-user"), vec!["alice@corp.example"]);
        let sent = echoed(&echo, "cookie").join("; ");
        assert!(!sent.contains("ferrygate_session"), "the site received the session cookie: {sent}");
        for own in cookies.split("; ").filter(|c| !c.starts_with("ferrygate_session")) {
            assert!(sent.contains(own), "{own} lost: {sent}");
        }
    }
}

/// Behind Caddy a client's X-Original-URI never wins over Caddy's
/// X-Forwarded-Uri: the shipped Caddyfile removes it, and without that line
/// Ferrygate alone refuses (style "forwarded": not read; "auto": 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_caddy_a_client_sent_original_uri_never_wins() {
    for (style, strip, want) in [
        ("forwarded", true, StatusCode::FORBIDDEN),
        ("forwarded", false, StatusCode::FORBIDDEN),
        ("auto", false, StatusCode::BAD_REQUEST),
    ] {
        let env = ferrygate(true, "127.0.0.1/32", style).await;
        let conf = if strip {
            shipped("Caddyfile")
        } else {
            shipped("Caddyfile").replace("request_header -X-Original-URI\n", "")
        };
        assert!(strip || !conf.contains("-X-Original-URI"));
        let caddy = caddy_from(&env, &conf);
        let bob = cookie_pair(
            &send(request(caddy.port, "POST", "/login", None, Some("email=bob%40corp.example&password=pw"))).await,
        );
        let mut req = request(caddy.port, "GET", "/admin", Some(&bob), None);
        req.headers_mut().insert("x-original-uri", "/".parse().unwrap());
        let res = send(req).await;
        assert_eq!(res.status, want, "style {style}, stripped {strip}: {}", res.text());
    }
}

/// The shipped nginx file overwrites every header the check reads: a
/// client's own `X-Original-URI`, `X-Forwarded-Uri` or `-Method` never
/// reaches Ferrygate. Run in `auto` style, where any copy that got through
/// would be read (and, disagreeing, answered 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_a_clients_own_check_headers_never_reach_the_check() {
    let env = ferrygate(false, "127.0.0.1/32", "auto").await;
    let nginx = nginx(&env);
    let port = nginx.port;
    let bob =
        cookie_pair(&send(request(port, "POST", "/login", None, Some("email=bob%40corp.example&password=pw"))).await);
    for (name, value) in [
        ("x-original-uri", "/"),
        ("x-forwarded-uri", "/"),
        ("x-forwarded-uri", "/public"),
        ("x-original-method", "OPTIONS"),
        ("x-forwarded-method", "OPTIONS"),
    ] {
        let mut req = request(port, "GET", "/admin", Some(&bob), None);
        req.headers_mut().insert(name, value.parse().unwrap());
        let res = send(req).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{name}: {value}: {}", res.text());
    }
    // The shipped method rule through nginx (X-Original-Method $request_method):
    // bob reads reports but is not in finance; a client's own method headers
    // saying GET never reach the check (if they did, the PUT would pass).
    assert_eq!(send(request(port, "GET", "/reports/q3", Some(&bob), None)).await.status, StatusCode::OK);
    let mut put = request(port, "PUT", "/reports/q3", Some(&bob), None);
    put.headers_mut().insert("x-original-method", "GET".parse().unwrap());
    put.headers_mut().insert("x-forwarded-method", "GET".parse().unwrap());
    assert_eq!(send(put).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(request(port, "GET", "/healthz", None, None)).await.status, StatusCode::OK, "the public hole");
    // And the page bob may see still works with them.
    let mut req = request(port, "GET", "/page", Some(&bob), None);
    req.headers_mut().insert("x-forwarded-uri", "/admin".parse().unwrap());
    let res = send(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

/// SPEC 2.2 in a check and on proxied requests alike: the rule for the
/// original method (GET covering HEAD; without a method source every rule
/// applies, the first of a tie winning), public holes without a session,
/// and networks on the client address after `trusted_proxies`.
#[tokio::test]
async fn rules_by_method_network_and_public_hole_decide_checks_and_proxied_requests() {
    let rules =
        "\n[[sites.authorize]]\npaths = [\"/ledger\"]\nmethods = [\"POST\", \"DELETE\"]\ngroups = [\"admins\"]\n\
                 \n[[sites.authorize]]\npaths = [\"/ledger\"]\nmethods = [\"GET\"]\ngroups = [\"staff\", \"admins\"]\n\
                 \n[[sites.authorize]]\npaths = [\"/status\"]\npublic = true\n\
                 \n[[sites.authorize]]\npaths = [\"/ops\"]\nnetworks = [\"10.0.0.0/8\"]\n";
    let env = ferrygate_with(false, "127.0.0.1/32", "auto", rules).await;
    let (alice, bob, carol) = (
        sign_in(&env, "alice@corp.example").await,
        sign_in(&env, "bob@corp.example").await,
        sign_in(&env, "carol@corp.example").await,
    );
    let status = |method: &'static str, uri: &'static str, who: Option<&str>| {
        let req = check(&env, "/_ferrygate/auth", &[("x-forwarded-method", method), ("x-forwarded-uri", uri)], who);
        async move { send(req).await.status }
    };
    // Methods pick the rule.
    assert_eq!(status("GET", "/ledger/q3", Some(&bob)).await, StatusCode::OK);
    assert_eq!(status("HEAD", "/ledger/q3", Some(&bob)).await, StatusCode::OK, "GET covers HEAD");
    assert_eq!(status("HEAD", "/ledger/q3", Some(&carol)).await, StatusCode::FORBIDDEN, "GET covers HEAD");
    assert_eq!(status("POST", "/ledger/q3", Some(&bob)).await, StatusCode::FORBIDDEN);
    assert_eq!(status("POST", "/ledger/q3", Some(&alice)).await, StatusCode::OK);
    assert_eq!(status("PUT", "/ledger/q3", Some(&carol)).await, StatusCode::OK, "no rule for PUT: a session is enough");
    assert_eq!(status("POST", "/ledger/q3", None).await, StatusCode::UNAUTHORIZED);
    // Without a method source every rule applies: the first of the tie (POST, DELETE: admins).
    let nginx_without_method = check(&env, "/_ferrygate/auth", &[("x-original-uri", "/ledger")], Some(&bob));
    assert_eq!(send(nginx_without_method).await.status, StatusCode::FORBIDDEN);
    // A public hole: no session needed; the identity when there is one.
    assert_eq!(status("GET", "/status", None).await, StatusCode::OK);
    let req =
        check(&env, "/_ferrygate/auth", &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/status")], Some(&alice));
    assert_eq!(send(req).await.header("x-ferrygate-user"), "alice@corp.example");
    // Networks: the client address is the right-most X-Forwarded-For address that is not a trusted proxy.
    let ops = |xff: Option<&'static str>| {
        let mut headers = vec![("x-forwarded-method", "GET"), ("x-forwarded-uri", "/ops")];
        headers.extend(xff.map(|v| ("x-forwarded-for", v)));
        let req = check(&env, "/_ferrygate/auth", &headers, Some(&alice));
        async move { send(req).await.status }
    };
    assert_eq!(ops(Some("10.1.2.3")).await, StatusCode::OK);
    assert_eq!(ops(Some("10.1.2.3, 192.0.2.7")).await, StatusCode::FORBIDDEN, "the right-most untrusted hop counts");
    assert_eq!(ops(None).await, StatusCode::FORBIDDEN, "the proxy's own address is not in the network");
    assert_eq!(ops(Some("10.1.2.3, 10.4.5.6:5555")).await, StatusCode::FORBIDDEN, "an unreadable hop is no address");
    // A method header that is no method is refused, never read as "every rule".
    let req = check(
        &env,
        "/_ferrygate/auth",
        &[("x-forwarded-method", "GE T"), ("x-forwarded-uri", "/ledger")],
        Some(&alice),
    );
    assert_eq!(send(req).await.status, StatusCode::BAD_REQUEST);
    // Two session cookies: the first correctly signed one decides.
    let (bob_pair, alice_pair) = (bob.clone(), alice.clone());
    assert_eq!(status("POST", "/ledger/q3", Some(&format!("{bob_pair}; {alice_pair}"))).await, StatusCode::FORBIDDEN);
    assert_eq!(status("POST", "/ledger/q3", Some(&format!("{alice_pair}; {bob_pair}"))).await, StatusCode::OK);
    let forged = format!("ferrygate_session=forged; {alice_pair}");
    assert_eq!(status("POST", "/ledger/q3", Some(&forged)).await, StatusCode::OK);

    // The same decision for requests proxied to the site.
    let proxied = |method: &'static str, path: &'static str, who: &str, xff: Option<&'static str>| {
        let mut r = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", env.ferrygate))
            .header("cookie", who.to_owned())
            .header("accept", "application/json");
        if let Some(v) = xff {
            r = r.header("x-forwarded-for", v);
        }
        let req = r.body(Full::default()).unwrap();
        async move { send(req).await.status }
    };
    assert_eq!(proxied("GET", "/ledger/q3", &bob, None).await, StatusCode::OK);
    assert_eq!(proxied("GET", "/ledger/q3", &carol, None).await, StatusCode::FORBIDDEN);
    assert_eq!(proxied("POST", "/ledger/q3", &bob, None).await, StatusCode::FORBIDDEN);
    assert_eq!(proxied("POST", "/ledger/q3", &alice, None).await, StatusCode::OK, "reached the site");
    assert_eq!(proxied("GET", "/ops", &alice, Some("10.9.9.9")).await, StatusCode::OK);
    assert_eq!(proxied("GET", "/ops", &alice, Some("192.0.2.7")).await, StatusCode::FORBIDDEN);
    // The shipped rules: reports are changed by finance only (alice is no member), read by anyone signed in.
    assert_eq!(proxied("GET", "/reports/q3", &bob, None).await, StatusCode::OK);
    assert_eq!(proxied("PUT", "/reports/q3", &alice, None).await, StatusCode::FORBIDDEN);
    assert_eq!(status("PATCH", "/reports/q3", Some(&alice)).await, StatusCode::FORBIDDEN);
    assert_eq!(status("GET", "/healthz", None).await, StatusCode::OK);
}
