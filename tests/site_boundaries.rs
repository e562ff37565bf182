//! What stays within a site, end to end through the `ferrygate` binary
//! on a multi-site configuration, over raw sockets where the behaviour is about
//! the wire: sessions bound to their site, one canonical authority, owned
//! routes on the canonical path, Ferrygate's cookies and client identity
//! (headers, trailers, `Connection`) never reaching a site.

use ferrygate_testkit as common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = r#"{"access_token":"portal-token","token_type":"bearer","expires_in":600}"#;
const BOUND: Duration = Duration::from_secs(10);

struct Sites {
    bin: Binary,
    provider: Mock,
    _dir: tempfile::TempDir,
}

/// Four sites on one gateway, all proxied to one echo upstream:
/// `public` (the default, qwyk), `intranet.test` (qwyk, `/app` protected),
/// `news.test` (payway, callback `/landing`), `corp.test` (rest).
async fn sites() -> Sites {
    let provider = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    std::fs::write(&users, "email,user_id,external_id,org_id\nalice@corp.example,1,,7\n").unwrap();
    let p = provider.addr;
    let config = format!(
        r#"
[sessions]
secret = "{SECRET}"
cookie_secure = false

[providers.qwyk]
kind = "qwyk"
server = "http://{p}"
organization_id = 12
site_id = 34

[providers.news]
kind = "payway"
server = "http://{p}"
client_id = "id"
client_secret = "payway-client-secret"
oid = "o"
redirect_uri = "https://news.test/landing"

[providers.corp]
kind = "rest"
url = "http://{p}/check"
users = "{users}"
forgot_password_url = "http://{p}/forgot"

[[sites]]
name = "public"
upstream = "http://{upstream}"
provider = "qwyk"
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/auth"
default_destination = "/my-portal"
allowed_destinations = ["/my-portal"]
[sites.home]
paths = ["/portal-home"]
redirect = "https://public.example/"

[[sites]]
name = "intranet"
hosts = ["intranet.test"]
upstream = "http://{upstream}"
provider = "qwyk"
protected_paths = ["/app"]
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/auth"
default_destination = "/my-portal"
allowed_destinations = ["/my-portal"]

[[sites]]
name = "news"
hosts = ["news.test"]
upstream = "http://{upstream}"
provider = "news"
[sites.login]
path = "/login"
[sites.portal]
default_destination = "/"
allowed_destinations = ["/"]
[sites.callback]
path = "/landing"

[[sites]]
name = "corp"
hosts = ["corp.test"]
upstream = "http://{upstream}"
provider = "corp"
[sites.login]
path = "/login"
[sites.portal]
default_destination = "/app"
allowed_destinations = ["/app"]
[sites.forgot_password]
path = "/forgot-password"
redirect = "/forgot-password?sent=1"
"#,
        users = users.display(),
    );
    let bin = spawn_binary(&config);
    Sites { bin, provider, _dir: dir }
}

/// Sends `request` as it is and reads one answer (head and, by
/// Content-Length, body): status, lower-cased head, body.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut tcp).await
}

async fn read_answer(tcp: &mut TcpStream) -> (u16, String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, tcp.read(&mut byte)).await.expect("no answer").unwrap();
        assert!(n == 1, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head[9..12].parse().unwrap();
    let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    tokio::time::timeout(BOUND, tcp.read_exact(&mut body)).await.expect("body cut short").unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// A header's value in a raw head (name matched case-insensitively).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn location(head: &str) -> &str {
    header(head, "location").unwrap_or_else(|| panic!("no location in {head}"))
}

/// The echo's JSON from a raw answer.
fn echo(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo ({e}): {body}"))
}

/// Signs alice in on `host` (qwyk) and returns the `Cookie` pair.
async fn sign_in(addr: SocketAddr, host: &str) -> String {
    let body = "email=alice%40corp.example&password=pw";
    let (status, head, _) = raw(
        addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    let set = header(&head, "set-cookie").expect("no session cookie");
    set.split(';').next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_session_counts_only_on_the_site_it_was_created_on() {
    let s = sites().await;
    let addr = s.bin.addr;
    let cookie = sign_in(addr, "public.example").await;
    // On its own site the session is an identity.
    let (status, _, body) =
        raw(addr, &format!("GET /x HTTP/1.1\r\nHost: public.example\r\nCookie: {cookie}\r\n\r\n")).await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&echo(&body), "x-ferrygate-user"), vec!["alice@corp.example"]);
    // On another site it is no session: the protected page sends to that site's login …
    let (status, head, _) =
        raw(addr, &format!("GET /app HTTP/1.1\r\nHost: intranet.test\r\nCookie: {cookie}\r\n\r\n")).await;
    assert_eq!(status, 303, "{head}");
    assert_eq!(location(&head), "/login?destination=%2Fapp");
    // … and a public page reaches the site without any identity.
    let (status, _, body) =
        raw(addr, &format!("GET /public HTTP/1.1\r\nHost: intranet.test\r\nCookie: {cookie}\r\n\r\n")).await;
    assert_eq!(status, 200);
    assert!(echoed(&echo(&body), "x-ferrygate-user").is_empty(), "{body}");
    // A returning user's login page is the site's form there, not the portal.
    let (status, _, body) =
        raw(addr, &format!("GET /login HTTP/1.1\r\nHost: intranet.test\r\nCookie: {cookie}\r\n\r\n")).await;
    assert_eq!(status, 200);
    assert_eq!(echo(&body)["uri"], "/login");
}

#[tokio::test]
async fn every_spelling_of_a_host_reaches_its_own_site() {
    let s = sites().await;
    let addr = s.bin.addr;
    for (target, host) in [
        ("/app", "intranet.test.:8080"),
        ("/app", "intranet.test.:"),
        ("/app", "INTRANET.Test."),
        ("http://intranet.test.:80/app", "public.example"),
        ("http://INTRANET.TEST/app", "public.example"),
    ] {
        let (status, head, _) = raw(addr, &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(status, 303, "{target} with Host {host} did not reach the protected site: {head}");
        assert_eq!(location(&head), "/login?destination=%2Fapp", "{target} {host}");
    }
    // The site hears the normalised host, its port kept.
    let (status, _, body) = raw(addr, "GET /public HTTP/1.1\r\nHost: Intranet.Test.:8080\r\n\r\n").await;
    assert_eq!(status, 200);
    let e = echo(&body);
    assert_eq!(echoed(&e, "host"), vec!["intranet.test:8080"]);
    assert_eq!(echoed(&e, "x-forwarded-host"), vec!["intranet.test:8080"]);
    // An absolute-form target wins over Host, and the site hears the target's host.
    let (_, _, body) = raw(addr, "GET http://public.example:80/p HTTP/1.1\r\nHost: intranet.test\r\n\r\n").await;
    assert_eq!(echoed(&echo(&body), "host"), vec!["public.example:80"]);
}

#[tokio::test]
async fn a_malformed_host_is_400() {
    let s = sites().await;
    for host in ["intranet.test:80:80", "intranet.test..", "a..b", ":8080", "intra$net.test:x"] {
        let (status, head, _) = raw(s.bin.addr, &format!("GET /app HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(status, 400, "Host {host:?}: {head}");
    }
    let (status, _, _) =
        raw(s.bin.addr, "GET /app HTTP/1.1\r\nHost: public.example\r\nHost: intranet.test\r\n\r\n").await;
    assert_eq!(status, 400, "two Host headers");
}

#[tokio::test]
async fn an_h2_authority_is_read_like_host() {
    let s = sites().await;
    let tcp = TcpStream::connect(s.bin.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for authority in ["intranet.test.:443", "Intranet.test"] {
        let req = http::Request::get(format!("http://{authority}/app"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = tokio::time::timeout(BOUND, send.send_request(req)).await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, ":authority {authority}");
        assert_eq!(res.headers()["location"], "/login?destination=%2Fapp");
    }
}

#[tokio::test]
async fn owned_routes_are_matched_on_the_canonical_path() {
    let s = sites().await;
    let addr = s.bin.addr;
    // A login POST in any spelling is the login route: authenticated, never proxied.
    let body = "email=alice%40corp.example&password=pw";
    for path in ["/LOGIN", "/login/", "//login", "/./login", "/%6cogin", "/login;x"] {
        let (status, head, _) = raw(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: public.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert_eq!(status, 303, "POST {path} reached the site: {head}");
        assert!(location(&head).starts_with("https://portal.example/auth?token=portal-token"), "{path}: {head}");
    }
    assert_eq!(s.provider.requests().len(), 6, "each spelling authenticated once");
    // The callback's state check cannot be skipped by spelling.
    for path in ["/landing/", "/LANDING", "//landing", "/./landing", "/%6canding", "/landing;x"] {
        let (status, head, body) =
            raw(addr, &format!("GET {path}?code=c&state=forged HTTP/1.1\r\nHost: news.test\r\n\r\n")).await;
        assert_eq!(status, 403, "{path}: {head}");
        assert!(body.contains("state_mismatch"), "{path}: {body}");
    }
    // Home in another spelling is still Home.
    let (status, head, _) = raw(addr, "GET /Portal-Home/ HTTP/1.1\r\nHost: public.example\r\n\r\n").await;
    assert_eq!(status, 303);
    assert_eq!(location(&head), "https://public.example/");
}

#[tokio::test]
async fn ferrygate_cookies_never_reach_the_site() {
    let s = sites().await;
    let addr = s.bin.addr;
    let cookie = sign_in(addr, "public.example").await;
    let sent = format!("a=1; {cookie}; ferrygate_session_state=abc.%2F; b=2");
    for (host, path) in [
        ("public.example", "/page"),
        ("public.example", "/login"),
        ("corp.test", "/forgot-password"),
        ("news.test", "/login"),
        ("news.test", "/elsewhere"),
    ] {
        let (status, _, body) =
            raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {sent}\r\n\r\n")).await;
        if status == 303 {
            continue; // a returning user on its own site: answered by Ferrygate, nothing proxied
        }
        assert_eq!(status, 200, "{host}{path}");
        assert_eq!(echoed(&echo(&body), "cookie"), vec!["a=1; b=2"], "{host}{path}");
    }
    // Only the state cookie, on the fast path.
    let (_, _, body) =
        raw(addr, "GET /page HTTP/1.1\r\nHost: public.example\r\nCookie: ferrygate_session_state=abc\r\n\r\n").await;
    assert!(echoed(&echo(&body), "cookie").is_empty(), "{body}");
}

#[tokio::test]
async fn a_connection_header_cannot_remove_the_identity_or_the_request_id() {
    let s = sites().await;
    let addr = s.bin.addr;
    let cookie = sign_in(addr, "public.example").await;
    let (status, _, body) = raw(
        addr,
        &format!(
            "GET /x HTTP/1.1\r\nHost: public.example\r\nCookie: {cookie}\r\nConnection: X-Ferrygate-User, X-Request-Id, x-ferrygate-provider\r\nX-Request-Id: client-id\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let e = echo(&body);
    assert_eq!(echoed(&e, "x-ferrygate-user"), vec!["alice@corp.example"], "{body}");
    assert_eq!(echoed(&e, "x-ferrygate-provider"), vec!["qwyk"], "{body}");
    let ids = echoed(&e, "x-request-id");
    assert_eq!(ids.len(), 1, "{body}");
    assert_ne!(ids[0], "client-id", "the client's listed X-Request-Id is hop-by-hop, so a new one is made");
}

/// An upstream that records the raw bytes of what it receives and answers
/// each request with an empty 200 (requests read up to the chunked body's end).
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // A chunked request ends with the last chunk and the trailer section's empty line.
                while !chunked_end(&got) {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            });
        }
    });
    (addr, seen)
}

fn chunked_end(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    text.find("\r\n0\r\n").is_some_and(|i| {
        let rest = &text[i + 5..];
        rest.starts_with("\r\n") || rest.contains("\r\n\r\n")
    })
}

fn plain_site(upstream: SocketAddr) -> String {
    format!(
        r#"
[sessions]
secret = "{SECRET}"
[providers.q]
kind = "qwyk"
server = "http://127.0.0.1:9"
organization_id = 1
site_id = 1
[[sites]]
name = "s"
upstream = "http://{upstream}"
provider = "q"
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/auth"
default_destination = "/p"
allowed_destinations = ["/p"]
"#
    )
}

#[tokio::test]
async fn client_trailers_named_x_ferrygate_are_removed() {
    let (upstream, seen) = recording_upstream().await;
    let bin = spawn_binary(&plain_site(upstream));
    let (status, head, _) = raw(
        bin.addr,
        "POST /upload HTTP/1.1\r\nHost: s.example\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nTrailer: X-Ferrygate-User, X-Checksum\r\n\r\n\
         5\r\nhello\r\n0\r\nX-Ferrygate-User: mallory\r\nx_ferrygate_groups: admins\r\nX-Checksum: abc\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).to_lowercase();
    assert!(got.contains("hello"), "{got}");
    assert!(got.contains("x-checksum: abc"), "trailers must still be forwarded: {got}");
    assert!(!got.contains("mallory") && !got.contains("admins"), "a client trailer claimed an identity: {got}");
}

#[tokio::test]
async fn h2_trailers_named_x_ferrygate_are_removed() {
    use http_body_util::StreamBody;
    let (upstream, seen) = recording_upstream().await;
    let bin = spawn_binary(&plain_site(upstream));
    let tcp = TcpStream::connect(bin.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-ferrygate-user", "mallory".parse().unwrap());
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>> = vec![
        Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"hello"))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    let req = http::Request::post("http://s.example/upload")
        .header("te", "trailers")
        // hyper's HTTP/1.1 client sends only the trailers the request declares.
        .header("trailer", "x-ferrygate-user, x-checksum")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let res = tokio::time::timeout(BOUND, send.send_request(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).to_lowercase();
    assert!(got.contains("hello") && got.contains("x-checksum: abc"), "trailers must still be forwarded: {got}");
    assert!(!got.contains("mallory"), "an h2 trailer claimed an identity: {got}");
}
