//! Operations end to end, mostly with the real binary: admin endpoints and
//! metrics, hot reload (file change, ConfigMap-style symlink swap, invalid
//! file), TLS with a certificate reload under an open connection, graceful
//! shutdown.

use ferrygate_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TOKEN: &str = r#"{"access_token":"t","token_type":"bearer","expires_in":600}"#;

/// The binary serving `dir/ferrygate.toml` (a symlink when `link` is set);
/// returns it with its traffic and admin addresses.
struct Running {
    child: Process,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    /// Its JSON log lines after the listening one.
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Waits (up to 10 s) for a log line with `message` whose fields include `field = value`.
    fn wait_for_log(&self, message: &str, field: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?} with {field}={value}"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == message && v[field] == value {
                return;
            }
        }
    }
}

fn start(config: &Path) -> Running {
    let Logged { child, addr, early, lines } =
        start_logged(&["serve", "--log-format", "json", "--config"], config, "info");
    // The admin listener binds port 0; the "listening" line says where.
    let listening: serde_json::Value = serde_json::from_str(early.last().unwrap()).unwrap();
    let admin = listening["admin"].as_str().unwrap().parse().unwrap();
    Running { child, addr, admin, lines }
}

fn config_text(provider: std::net::SocketAddr, upstream: std::net::SocketAddr, extra_site: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshutdown_grace = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        qwyk_config(provider, upstream, "", extra_site)
    )
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn admin_endpoints_and_metrics() {
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    std::fs::write(&path, config_text(mock.addr, upstream, "")).unwrap();
    let fg = start(&path);
    let admin = |p: &str| format!("http://{}{p}", fg.admin);
    assert_eq!(get(&admin("/healthz")).await.status, StatusCode::OK);
    assert_eq!(get(&admin("/readyz")).await.status, StatusCode::OK);
    // /metrics on a traffic port is just a path of the site.
    assert_eq!(get(&format!("http://{}/metrics", fg.addr)).await.json()["uri"], "/metrics");

    let res = post_form(&format!("http://{}/login", fg.addr), &[("email", "a@b.example"), ("password", "pw")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let _ = get(&format!("http://{}/page", fg.addr)).await;
    // A returning user is a token-cache hit; a forged cookie a miss.
    let back = get_with_cookie(&format!("http://{}/login", fg.addr), &cookie_pair(&res)).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let _ = get_with_cookie(&format!("http://{}/page", fg.addr), "ferrygate_session=forged").await;
    // A keep-alive client connection with a proxied request holds an upstream lane.
    let mut held = tokio::net::TcpStream::connect(fg.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut held,
        format!("GET /held HTTP/1.1\r\nHost: {}\r\n\r\n", fg.addr).as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut held, &mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let metrics = get(&admin("/metrics")).await;
    assert!(metrics.header("content-type").starts_with("text/plain"));
    let text = metrics.text();
    for needle in [
        r#"ferrygate_login_attempts_total{site="acme",provider="acme-qwyk",outcome="success"} 1"#,
        // The login POST and the returning user.
        r#"ferrygate_requests_total{site="acme",route="login",status="303"} 2"#,
        r#"ferrygate_requests_total{site="acme",route="proxy",status="200"}"#,
        "ferrygate_provider_request_duration_seconds_bucket{provider=\"acme-qwyk\",le=",
        "ferrygate_upstream_request_duration_seconds_count{site=\"acme\"}",
        "ferrygate_sessions_active 1",
        "ferrygate_token_cache_hits_total 1",
        "ferrygate_token_cache_misses_total 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    let lanes = metric(&text, "ferrygate_upstream_lanes_open");
    assert!(lanes >= 1.0, "open lanes: {lanes}");
    drop(held);
    // Every line is Prometheus text: a comment or `name{labels} value`.
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
    }
}

#[tokio::test]
async fn reloads_apply_valid_files_keep_sessions_and_refuse_invalid_ones() {
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    // ConfigMap layout: ferrygate.toml -> ..data/ferrygate.toml, ..data -> a versioned folder.
    let v1 = dir.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("ferrygate.toml"), config_text(mock.addr, upstream, "")).unwrap();
    std::os::unix::fs::symlink("v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ferrygate.toml", dir.path().join("ferrygate.toml")).unwrap();
    let fg = start(&dir.path().join("ferrygate.toml"));
    let url = |p: &str| format!("http://{}{p}", fg.addr);

    let login = post_form(&url("/login"), &[("email", "a@b.example"), ("password", "pw")]).await;
    let cookie = cookie_pair(&login);
    assert_eq!(get(&url("/secret")).await.status, StatusCode::OK);

    // A new version arrives by symlink swap: /secret becomes protected.
    let v2 = dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("ferrygate.toml"), config_text(mock.addr, upstream, "protected_paths = [\"/secret\"]"))
        .unwrap();
    std::os::unix::fs::symlink("v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    wait_until("the reload", async || get(&url("/secret")).await.status == StatusCode::SEE_OTHER).await;
    // Sessions survive the reload.
    assert_eq!(get_with_cookie(&url("/secret"), &cookie).await.status, StatusCode::OK);

    // An invalid version is refused; the previous one serves on.
    let v3 = dir.path().join("v3");
    std::fs::create_dir(&v3).unwrap();
    std::fs::write(v3.join("ferrygate.toml"), "[server]\nlisten = 7\n").unwrap();
    std::os::unix::fs::symlink("v3", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    let metrics = format!("http://{}/metrics", fg.admin);
    wait_until("the failed reload to be counted", async || {
        get(&metrics).await.text().contains(r#"ferrygate_config_reloads_total{result="error"} 1"#)
    })
    .await;
    assert_eq!(get(&url("/secret")).await.status, StatusCode::SEE_OTHER, "the last valid config still serves");
    assert!(get(&metrics).await.text().contains(r#"ferrygate_config_reloads_total{result="success"} 1"#));

    // SIGHUP reloads too: back to a valid file without protection.
    std::fs::write(v3.join("ferrygate.toml"), config_text(mock.addr, upstream, "")).unwrap();
    // The file poller would notice the change too: the log says which one reloaded.
    let hup = Command::new("kill").args(["-HUP", &fg.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    fg.wait_for_log("configuration reloaded", "trigger", "SIGHUP");
    assert_eq!(get(&url("/secret")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_exits_zero() {
    let slow = serve(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Response::new(full("done"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    std::fs::write(&path, config_text("127.0.0.1:9".parse().unwrap(), slow, "")).unwrap();
    let mut fg = start(&path);
    let url = format!("http://{}/slow", fg.addr);
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill").args(["-TERM", &fg.child.id().to_string()]).status();
    let readyz = format!("http://{}/readyz", fg.admin);
    wait_until("readiness to flip", async || get(&readyz).await.status == StatusCode::SERVICE_UNAVAILABLE).await;
    let res = in_flight.await.unwrap();
    assert_eq!((res.status, res.text()), (StatusCode::OK, "done".to_owned()), "the in-flight request finished");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = fg.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after the drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn tls_serves_h2_and_http1_and_reloads_its_certificate() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let write_cert = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join(format!("{name}.crt")), c.cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), c.signing_key.serialize_pem()).unwrap();
        c.cert.der().to_vec()
    };
    let first = write_cert("one");
    let second = write_cert("two");
    let config = |name: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{name}.crt\"\nkey = \"{name}.key\"\n{}",
            qwyk_config("127.0.0.1:9".parse().unwrap(), upstream, "", "")
        )
    };
    let loaded = ferrygate::from_toml(&config("one"), dir.path()).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(loaded).await.unwrap();
    let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let tls_addr = server.local_addrs()[1];
    let reloader = server.reloader();
    tokio::spawn(server.run(std::future::pending()));

    // A client trusting both certificates, so it sees which one is served.
    let mut roots = String::new();
    for name in ["one", "two"] {
        roots.push_str(&std::fs::read_to_string(dir.path().join(format!("{name}.crt"))).unwrap());
    }
    std::fs::write(dir.path().join("roots.pem"), roots).unwrap();
    let connector = ferrygate::core::tls::https_connector(Some(&dir.path().join("roots.pem")), true).unwrap();
    let served_cert = |tls_addr: std::net::SocketAddr| {
        let roots = dir.path().join("roots.pem");
        async move {
            let config = ferrygate::core::tls::client_config(Some(&roots)).unwrap();
            let connector = tokio_rustls::TlsConnector::from(config);
            let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
            let tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
            tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
        }
    };
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector.clone());
    let res = h2
        .request(Request::get(format!("https://localhost:{}/x", tls_addr.port())).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2, "ALPN chose h2");
    let echo: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(echoed(&echo, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(served_cert(tls_addr).await, first);

    // Reload to the second certificate while an HTTP/1.1 connection stays open.
    let http1: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(false).build(
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                (*ferrygate::core::tls::client_config(Some(&dir.path().join("roots.pem"))).unwrap()).clone(),
            )
            .https_only()
            .enable_http1()
            .build(),
    );
    let url = format!("https://localhost:{}/y", tls_addr.port());
    assert_eq!(
        http1.request(Request::get(&url).body(Full::default()).unwrap()).await.unwrap().status(),
        StatusCode::OK
    );
    let next = ferrygate::from_toml(&config("two"), dir.path()).unwrap().config;
    reloader.reload(gateway.reload(next).await.unwrap().gateway_layer().clone()).unwrap();
    assert_eq!(served_cert(tls_addr).await, second, "new connections get the new certificate");
    let again = http1.request(Request::get(&url).body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK, "the open connection kept working");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrygate.toml");
    std::fs::write(&path, config_text(mock.addr, upstream, "")).unwrap();
    // The global flag before the subcommand, as well.
    let Logged { mut child, addr, early: mut lines, lines: rest } =
        start_logged(&["--log-format", "json", "serve", "--config"], &path, "debug");
    let _ = post_form(&format!("http://{addr}/login"), &[("email", "Alice@B.example"), ("password", "pw")]).await;
    let _ = post_form(&format!("http://{addr}/login"), &[("email", " alice@b.example. "), ("password", "pw")]).await;
    let _ = post_form(&format!("http://{addr}/login"), &[("email", "alice@b.example"), ("password", "")]).await;
    let _ = get(&format!("http://{addr}/page")).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    lines.extend(rest.try_iter());
    let mut audit = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        if line.contains("\"event\":\"login\"") {
            assert!(!line.to_lowercase().contains("alice"), "the account in clear: {line}");
            audit.push(v);
        }
    }
    // One audit event per attempt, with SPEC 7's fields; the account as a keyed
    // hash, the same for two spellings of one account.
    assert_eq!(audit.len(), 3, "{lines:?}");
    let field = |v: &serde_json::Value, name: &str| {
        v.get("fields").and_then(|f| f.get(name)).or_else(|| v.get(name)).cloned().unwrap_or_default()
    };
    for (v, outcome) in audit.iter().zip(["success", "success", "missing_credentials"]) {
        assert_eq!(field(v, "site"), "acme", "{v}");
        assert_eq!(field(v, "provider"), "acme-qwyk", "{v}");
        assert_eq!(field(v, "outcome"), outcome, "{v}");
        assert_eq!(field(v, "client_ip"), "127.0.0.1", "{v}");
    }
    for v in &audit[..2] {
        let account = field(v, "account");
        let account = account.as_str().unwrap_or_default();
        assert!(account.len() == 16 && account.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
    }
    assert_eq!(field(&audit[0], "account"), field(&audit[1], "account"), "two spellings, two accounts");
}

/// A site config (provider and upstream never called) with `server` lines in [server].
fn plain_config(server: &str) -> ferrygate::Config {
    let toml = qwyk_config("127.0.0.1:9".parse().unwrap(), "127.0.0.1:9".parse().unwrap(), "", "");
    let toml = format!("[server]\n{server}\n{toml}");
    ferrygate::from_toml(&toml, Path::new(".")).unwrap_or_else(|e| panic!("{e}")).config
}

/// A traffic port already taken — by another program, or another copy of
/// Ferrygate — is an error naming it, never a port silently shared.
#[tokio::test]
async fn a_traffic_port_in_use_is_refused_even_by_a_second_ferrygate() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let gateway = ferrygate::Gateway::from_config(plain_config(&format!("listen = [\"{addr}\"]"))).await.unwrap();
    let err = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap_err();
    assert!(err.to_string().contains(&format!("cannot listen on {addr}")), "{err}");
    drop(taken);

    let first = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    assert_eq!(first.local_addrs(), vec![addr]);
    let err = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap_err();
    assert!(err.to_string().contains(&format!("cannot listen on {addr}")), "{err}");
}

#[tokio::test]
async fn a_connection_that_sent_nothing_does_not_hold_up_shutdown() {
    let config = plain_config("listen = [\"127.0.0.1:0\"]\nshutdown_grace = \"20s\"");
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    // A preconnect, say: connected, nothing sent. Then a served request, so the
    // idle connection has surely been accepted by then.
    let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = get(&format!("http://{addr}/")).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("shutdown waited for a connection that had sent nothing")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(idle);
}
