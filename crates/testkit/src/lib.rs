//! The integration tests' harness, compiled once for every test file:
//! loopback servers on port 0, a recording mock provider, Ferrygate started
//! in-process from TOML (or as the `ferrygate` binary, found next to the test
//! executable), and a client that never follows redirects. Test files name it
//! `common` (`use ferrygate_testkit as common;`), so each reads as the
//! behaviour it covers.
#![allow(missing_debug_implementations)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// Serves `handler` on 127.0.0.1:0 (with upgrades) until the test ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A request as a mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A mock provider that records every request and answers with a fixed reply.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Mock {
    pub async fn start(status: u16, reply: &'static str, delay: Duration) -> Self {
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let record = seen.clone();
        let addr = serve(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                record.lock().unwrap().push(Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body,
                });
                tokio::time::sleep(delay).await;
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(full(body_static(reply)))
                    .unwrap()
            }
        })
        .await;
        Self { addr, seen }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

fn body_static(b: &'static str) -> Bytes {
    Bytes::from_static(b.as_bytes())
}

/// An upstream that answers every request with a JSON echo of what it received.
pub async fn echo_upstream() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let echo = serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        Response::builder().header("content-type", "application/json").body(full(echo.to_string())).unwrap()
    })
    .await
}

/// Every value of `name` in an echo's headers.
pub fn echoed(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

/// A running Ferrygate; stops when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Starts Ferrygate from TOML (with `listen` forced to 127.0.0.1:0).
pub async fn gateway(toml: &str) -> Gateway {
    gateway_in(toml, Path::new(".")).await
}

pub async fn gateway_in(toml: &str, dir: &Path) -> Gateway {
    let toml = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{toml}");
    let config = ferrygate::from_toml(&toml, dir).unwrap_or_else(|e| panic!("{e}")).config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Gateway { addr, _stop: stop }
}

/// A qwyk setup: `extra_server` goes into `[server]`, `site_extra` into the site.
pub fn qwyk_config(provider: SocketAddr, upstream: SocketAddr, server_extra: &str, site_extra: &str) -> String {
    format!(
        r#"{server_extra}
[sessions]
secret = "{SECRET}"
cookie_secure = false

[providers.acme-qwyk]
kind = "qwyk"
server = "http://{provider}"
organization_id = 12
site_id = 34
timeout = "500ms"

[[sites]]
name = "acme"
upstream = "http://{upstream}"
provider = "acme-qwyk"
{site_extra}

[sites.login]
path = "/login"
failure_redirect = "/login?lang=en"

[sites.portal]
url = "https://portal.acme.example/auth/external"
default_destination = "/my-portal"
allowed_destinations = ["/my-portal"]

[sites.home]
paths = ["/portal-home"]
redirect = "https://www.acme.example/"

[sites.logout]
paths = ["/portal-logout"]
redirect = "https://www.acme.example/goodbye"

[sites.wizard]
path = "/book"
destination = "/my-portal/quotations/new"
params = ["origin", "destination_port", "cargo_type", "product"]
"#
    )
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A complete answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
    }
    /// The Location header, parsed (relative targets resolved against example.invalid).
    pub fn location(&self) -> url::Url {
        url::Url::parse("http://example.invalid/").unwrap().join(self.header("location")).unwrap()
    }
    /// The `Max-Age` of the Set-Cookie header (a remembered login's cookie).
    pub fn max_age(&self) -> u64 {
        let cookie = self.header("set-cookie");
        let value = cookie.split(';').find_map(|p| p.trim().strip_prefix("Max-Age="));
        value.unwrap_or_else(|| panic!("no Max-Age: {cookie}")).parse().unwrap()
    }
}

/// The value of the unlabelled metric `name` in a Prometheus text page.
pub fn metric(page: &str, name: &str) -> f64 {
    let line = page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
    line.unwrap_or_else(|| panic!("no {name} in:\n{page}")).trim().parse().unwrap()
}

pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let res =
        tokio::time::timeout(Duration::from_secs(10), client().request(req)).await.expect("no answer in 10s").unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body }
}

pub async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

/// A form POST.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> Answer {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    send(
        Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await
}

/// A JSON POST.
pub async fn post_json(url: &str, json: serde_json::Value) -> Answer {
    send(
        Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json.to_string())))
            .unwrap(),
    )
    .await
}

/// The decoded query parameters of a URL, in order.
pub fn query(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The real `ferrygate serve` binary, on a config written to a temp dir;
/// killed when dropped.
pub struct Binary {
    pub addr: SocketAddr,
    _child: Process,
    _dir: tempfile::TempDir,
}

impl Binary {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A child process that is killed and reaped when dropped, so a failing test
/// leaves no process behind.
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `ferrygate` process logging JSON to stdout, read line by line on a thread.
pub struct Logged {
    pub child: Process,
    /// The first traffic address from the "ferrygate listening" line.
    pub addr: SocketAddr,
    /// The lines up to and including that one.
    pub early: Vec<String>,
    /// Every line after it.
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// Runs `ferrygate ARGS CONFIG` with `RUST_LOG=rust_log` (ARGS must select
/// JSON logs) and waits for its "ferrygate listening" line.
pub fn start_logged(args: &[&str], config: &Path, rust_log: &str) -> Logged {
    start_logged_env(args, config, rust_log, &[])
}

/// As [`start_logged`], with extra environment variables.
pub fn start_logged_env(args: &[&str], config: &Path, rust_log: &str, env: &[(&str, &str)]) -> Logged {
    use std::io::BufRead;
    let mut child = Process(
        std::process::Command::new(binary())
            .args(args)
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut early = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).expect("ferrygate did not start");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        early.push(line);
        if v["message"] == "ferrygate listening" {
            break v["addrs"].as_str().unwrap().split(' ').next().unwrap().parse().unwrap();
        }
    };
    Logged { child, addr, early, lines }
}

/// Starts `ferrygate serve` with `toml` (listen forced to 127.0.0.1:0) and
/// reads the bound address from its JSON log.
pub fn spawn_binary(toml: &str) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    std::fs::write(&path, format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{toml}")).unwrap();
    let Logged { child, addr, .. } = start_logged(&["serve", "--log-format", "json", "--config"], &path, "info");
    Binary { addr, _child: child, _dir: dir }
}

/// The `name=value` pair of a Set-Cookie answer, for a Cookie header.
pub fn cookie_pair(answer: &Answer) -> String {
    answer.header("set-cookie").split(';').next().unwrap().to_owned()
}

/// GET with a Cookie header.
pub async fn get_with_cookie(url: &str, cookie: &str) -> Answer {
    send(Request::get(url).header("cookie", cookie).body(Full::default()).unwrap()).await
}

/// A test CA and a server certificate for `localhost` and 127.0.0.1 signed by
/// it, written to `dir` as `ca.pem`, `server.pem` and `server.key`.
pub fn write_test_pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Ferrygate test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

/// A gateway config with one staff site `corp` on `upstream`, signed in by
/// the provider `corp` whose table is `provider` (its `kind` included):
/// `/app` protected, `/admin` for the `admins` group, no rate limits to
/// speak of. `top` goes before every section, `sessions` into `[sessions]`.
pub fn staff_config(top: &str, sessions: &str, provider: &str, upstream: SocketAddr) -> String {
    format!(
        r#"
{top}
[sessions]
secret = "{SECRET}"
cookie_secure = false
{sessions}

[limits]
login_per_ip = "100000/min"
login_per_account = "100000/min"

[providers.corp]
{provider}

[[sites]]
name = "corp"
upstream = "http://{upstream}"
provider = "corp"
protected_paths = ["/app"]

[[sites.authorize]]
paths = ["/admin"]
groups = ["admins"]

[sites.login]
path = "/login"

[sites.portal]
default_destination = "/app"
allowed_destinations = ["/app", "/admin"]
"#
    )
}

/// The `ferrygate` binary cargo built for this test run: next to the test
/// executable's `deps/` directory (`target/<profile>/ferrygate`).
pub fn binary() -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("the test executable's path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("ferrygate{}", std::env::consts::EXE_SUFFIX))
}
