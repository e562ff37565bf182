//! End to end: the reverse-proxy path through the real server.
//!
//! Longer than 400 lines on purpose: every proxying rule of spec section 2
//! (streaming, hop-by-hop, X-Forwarded-*, upgrades, Location) is a case here,
//! sharing one upstream harness.

use ferrygate_testkit as common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const BOUND: Duration = Duration::from_secs(5);

/// A plain site config in front of `upstream`, with extra [server] and site lines.
fn site_config(upstream: &str, server_extra: &str, site_extra: &str) -> String {
    // A provider is needed for a site; this one is never called.
    qwyk_config("127.0.0.1:9".parse().unwrap(), "127.0.0.1:9".parse().unwrap(), server_extra, site_extra)
        .replace("upstream = \"http://127.0.0.1:9\"", &format!("upstream = \"{upstream}\""))
}

#[tokio::test]
async fn responses_stream_before_the_upstream_finishes() {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let upstream = serve(move |_req: Request<Incoming>| {
        let gate = gate.clone();
        async move {
            let frames = futures_util::stream::unfold(0u8, move |step| {
                let gate = gate.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, Infallible>(Frame::data(Bytes::from("first"))), 1)),
                        1 => {
                            gate.notified().await;
                            Some((Ok(Frame::data(Bytes::from("second"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(StreamBody::new(frames).boxed())
        }
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let res =
        tokio::time::timeout(BOUND, client().request(Request::get(gw.url("/download")).body(Full::default()).unwrap()))
            .await
            .expect("headers must arrive while the upstream is still sending")
            .unwrap();
    let mut body = res.into_body();
    let first = tokio::time::timeout(BOUND, body.frame()).await.expect("first chunk held back").unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    release.notify_one();
    let rest = tokio::time::timeout(BOUND, body.collect()).await.unwrap().unwrap().to_bytes();
    assert_eq!(rest, "second");
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let got_first = Arc::new(Notify::new());
    let signal = got_first.clone();
    let upstream = serve(move |req: Request<Incoming>| {
        let signal = signal.clone();
        async move {
            let mut body = req.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            signal.notify_one();
            let rest = body.collect().await.unwrap().to_bytes();
            Response::new(full(format!("{}|{}", String::from_utf8_lossy(&first), String::from_utf8_lossy(&rest))))
        }
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let wait = got_first.clone();
    let frames = futures_util::stream::unfold(0u8, move |step| {
        let wait = wait.clone();
        async move {
            match step {
                0 => Some((Ok::<_, Infallible>(Frame::data(Bytes::from("up-1"))), 1)),
                1 => {
                    // Only sent once the upstream has the first chunk: a buffering proxy deadlocks here.
                    wait.notified().await;
                    Some((Ok(Frame::data(Bytes::from("up-2"))), 2))
                }
                _ => None,
            }
        }
    });
    let streaming: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(gw.url("/upload")).body(StreamBody::new(Box::pin(frames))).unwrap();
    let res = tokio::time::timeout(BOUND, streaming.request(req)).await.expect("request body was buffered").unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "up-1|up-2");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let upstream = serve(|req: Request<Incoming>| async move {
        let seen: Vec<String> = req.headers().keys().map(|k| k.as_str().to_owned()).collect();
        Response::builder()
            .header("connection", "x-resp-hop")
            .header("x-resp-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-resp-end", "1")
            .body(full(seen.join(",")))
            .unwrap()
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let res = send(
        Request::get(gw.url("/"))
            .header("connection", "keep-alive, X-Hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic eA==")
            .header("x-end", "1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let seen = res.text();
    let seen: Vec<&str> = seen.split(',').collect();
    for hop in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(!seen.contains(&hop), "{hop} reached the upstream: {seen:?}");
    }
    assert!(seen.contains(&"x-end"), "{seen:?}");
    assert!(res.headers.get("x-resp-hop").is_none());
    assert!(res.headers.get("keep-alive").is_none());
    assert_eq!(res.header("x-resp-end"), "1");
}

#[tokio::test]
async fn forwarded_headers_are_replaced_for_untrusted_peers() {
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let res = send(
        Request::get(gw.url("/page?q=1"))
            .header("host", "www.acme.example")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "for=6.6.6.6")
            .header("x-real-ip", "6.6.6.6")
            .header("x-forwarded-port", "443")
            .header("x-forwarded-prefix", "/admin")
            .header("X-Ferrygate-User", "admin@acme.example")
            .header("x_ferrygate_user_id", "1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let echo = res.json();
    assert_eq!(echo["uri"], "/page?q=1");
    assert_eq!(echoed(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), vec!["www.acme.example"]);
    assert_eq!(echoed(&echo, "host"), vec!["www.acme.example"], "Host passes unchanged");
    for name in ["x-real-ip", "x-forwarded-port", "x-forwarded-prefix"] {
        assert!(echoed(&echo, name).is_empty(), "{name} from an untrusted client reached the site");
    }
    assert!(echoed(&echo, "forwarded").is_empty());
    assert!(echoed(&echo, "x-ferrygate-user").is_empty());
    assert!(echoed(&echo, "x_ferrygate_user_id").is_empty());
}

#[tokio::test]
async fn forwarded_headers_are_extended_for_trusted_peers() {
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}/base"), "trusted_proxies = [\"127.0.0.0/8\"]", "")).await;
    let res = send(
        Request::get(gw.url("/page"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "www.acme.example")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let echo = res.json();
    assert_eq!(echo["uri"], "/base/page");
    assert_eq!(echoed(&echo, "x-forwarded-for"), vec!["203.0.113.7, 127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), vec!["www.acme.example"]);
}

/// RFC 6455 §1.3's example handshake: the key and the accept that answers it.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

#[tokio::test]
async fn upgrades_are_spliced_through() {
    let upstream = serve(|mut req: Request<Incoming>| async move {
        if req.headers().get("upgrade").map(|v| v.as_bytes()) != Some(b"websocket") {
            return Response::builder().status(400).body(full("no upgrade")).unwrap();
        }
        if req.headers().get("sec-websocket-key").map(|v| v.as_bytes()) != Some(WS_KEY.as_bytes()) {
            return Response::builder().status(400).body(full("no key")).unwrap();
        }
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgrade.await.unwrap());
            let mut buf = [0u8; 64];
            loop {
                let n = io.read(&mut buf).await.unwrap_or(0);
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", WS_ACCEPT)
            .header("keep-alive", "timeout=5")
            .body(full(""))
            .unwrap()
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(BOUND, tcp.read_exact(&mut byte)).await.expect("no 101").unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(!head.contains("keep-alive"), "hop-by-hop headers of a 101 must go: {head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    tokio::time::timeout(BOUND, tcp.read_exact(&mut pong)).await.expect("no echo").unwrap();
    assert_eq!(&pong, b"ping");
}

/// An upstream that answers every request on a connection with `answer`,
/// then records whatever else arrives on it.
async fn raw_upstream(answer: &'static str) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                loop {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if !answered {
                        answered = true;
                        let _ = conn.write_all(answer.as_bytes()).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_101_that_does_not_answer_the_handshake_is_not_spliced() {
    for accept in ["", "Sec-WebSocket-Accept: c29tZXRoaW5nIGVsc2U=\r\n"] {
        let answer: &'static str = Box::leak(
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n{accept}\r\n")
                .into_boxed_str(),
        );
        let (upstream, seen) = raw_upstream(answer).await;
        let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let handshake = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n"
        );
        tcp.write_all(handshake.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        // The gateway answers 502 and closes: read to the end, bounded.
        tokio::time::timeout(BOUND, tcp.read_to_end(&mut answer)).await.expect("the connection was left open").unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 502"), "{accept:?}: {answer}");
        // The upstream did get the handshake (so the 101 was its answer to it).
        assert!(String::from_utf8_lossy(&seen.lock().unwrap()).contains("GET /ws"), "{accept:?}");
    }
}

#[tokio::test]
async fn a_down_upstream_is_502_and_a_slow_one_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = gateway(&site_config(&format!("http://{closed}"), "", "")).await;
    assert_eq!(get(&gw.url("/")).await.status, StatusCode::BAD_GATEWAY);

    let slow = serve(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::new(full("late"))
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{slow}"), "upstream_timeout = \"300ms\"", "")).await;
    let started = std::time::Instant::now();
    assert_eq!(get(&gw.url("/")).await.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn location_headers_are_rewritten_by_prefix() {
    let upstream = serve(|req: Request<Incoming>| async move {
        let target = match req.uri().path() {
            "/a" => "https://portal-internal.acme.example/login?from=a",
            _ => "https://other.example/login",
        };
        Response::builder().status(302).header("location", target).body(full("")).unwrap()
    })
    .await;
    let config = format!(
        "{}\n[[sites.rewrite_location]]\nfrom = \"https://portal-internal.acme.example/login\"\nto = \"/login\"\n",
        site_config(&format!("http://{upstream}"), "", "")
    );
    let gw = gateway(&config).await;
    assert_eq!(get(&gw.url("/a")).await.header("location"), "/login?from=a");
    assert_eq!(get(&gw.url("/b")).await.header("location"), "https://other.example/login");
}

async fn marker(name: &'static str) -> std::net::SocketAddr {
    serve(move |_req: Request<Incoming>| async move { Response::new(full(name)) }).await
}

#[tokio::test]
async fn sites_are_chosen_by_host() {
    let (a, b) = (marker("site-a").await, marker("site-b").await);
    let two_sites = format!(
        "{}\n{}",
        site_config(&format!("http://{a}"), "", "hosts = [\"a.example\"]"),
        site_config(&format!("http://{b}"), "", "")
            .split("[[sites]]")
            .nth(1)
            .map(|s| format!("[[sites]]{s}"))
            .unwrap()
            .replace("name = \"acme\"", "name = \"fallback\"")
    );
    let gw = gateway(&two_sites).await;
    for (host, want) in [("a.example", "site-a"), ("A.Example:8080", "site-a"), ("b.example", "site-b")] {
        let res = send(Request::get(gw.url("/")).header("host", host).body(Full::default()).unwrap()).await;
        assert_eq!(res.text(), want, "{host}");
    }

    let only_a = site_config(&format!("http://{a}"), "", "hosts = [\"a.example\"]");
    let gw = gateway(&only_a).await;
    let res = send(Request::get(gw.url("/")).header("host", "b.example").body(Full::default()).unwrap()).await;
    assert_eq!(res.status, StatusCode::MISDIRECTED_REQUEST);
    // The answer says which hosts would be served.
    assert!(res.text().contains("the configured hosts are: a.example"), "{}", res.text());
}

#[tokio::test]
async fn h2_clients_are_proxied() {
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let res = tokio::time::timeout(BOUND, h2.request(Request::get(gw.url("/h2?x=1")).body(Full::default()).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["uri"], "/h2?x=1");
    assert_eq!(echoed(&echo, "x-forwarded-host"), vec![gw.addr.to_string()]);
}

#[tokio::test]
async fn other_upgrades_are_not_tunnelled() {
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let res = send(
        Request::get(gw.url("/"))
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            .header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let echo = res.json();
    assert!(echoed(&echo, "upgrade").is_empty() && echoed(&echo, "http2-settings").is_empty(), "{echo}");
    let res = send(Request::connect(gw.addr.to_string()).body(Full::default()).unwrap()).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_upstream_timeout_starts_after_the_upload() {
    let upstream = serve(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(full(format!("{} bytes", body.len())))
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "upstream_timeout = \"300ms\"", "")).await;
    // An upload that takes longer than the timeout, chunk by chunk.
    let frames = futures_util::stream::unfold(0u8, |step| async move {
        if step == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"0123456789"))), step + 1))
    });
    let streaming: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(gw.url("/upload")).body(StreamBody::new(Box::pin(frames))).unwrap();
    let res = tokio::time::timeout(BOUND, streaming.request(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "50 bytes");
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_passed_upstream() {
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let res = get(&gw.url("/a")).await;
    let made = res.header("x-request-id").to_owned();
    assert_eq!(made.len(), 29, "prefix-counter: {made}");
    assert_eq!(echoed(&res.json(), "x-request-id"), vec![made.clone()]);
    assert_ne!(get(&gw.url("/a")).await.header("x-request-id"), made, "ids are unique");
    let res = send(Request::get(gw.url("/b")).header("x-request-id", "trace-42").body(Full::default()).unwrap()).await;
    assert_eq!(res.header("x-request-id"), "trace-42");
    assert_eq!(echoed(&res.json(), "x-request-id"), vec!["trace-42"]);
}

#[tokio::test]
async fn an_upload_that_stops_moving_times_out() {
    // The site answers only after 5 s and never reads the body.
    let stubborn = serve(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::new(full("late"))
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{stubborn}"), "upstream_timeout = \"300ms\"", "")).await;
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let frames = futures_util::stream::iter((0..1024).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))));
    let streaming: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let started = std::time::Instant::now();
    let req = Request::post(gw.url("/upload")).body(StreamBody::new(frames)).unwrap();
    let res = tokio::time::timeout(BOUND, streaming.request(req)).await.expect("the upload hung").unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// An upstream that answers with the number of the connection a request came
/// on, and counts its connections: accepted, and still open.
struct Counting {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    open: Arc<std::sync::atomic::AtomicUsize>,
    closed: Arc<Notify>,
}

async fn counting_upstream() -> Counting {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, open, closed) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let counters = (accepted.clone(), open.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let n = counters.0.fetch_add(1, Ordering::SeqCst) + 1;
            counters.1.fetch_add(1, Ordering::SeqCst);
            let (open, closed) = (counters.1.clone(), counters.2.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(full(format!("connection {n}"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                open.fetch_sub(1, Ordering::SeqCst);
                closed.notify_waiters();
            });
        }
    });
    Counting { addr, accepted, open, closed }
}

/// One keep-alive HTTP/1.1 connection to the gateway.
async fn keep_alive(gw: &Gateway) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn which_connection(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, gw: &Gateway) -> String {
    send.ready().await.unwrap();
    let req = Request::get("/page").header(http::header::HOST, gw.addr.to_string()).body(Full::default()).unwrap();
    let res = tokio::time::timeout(BOUND, send.send_request(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn each_client_connection_has_its_own_upstream_connection_while_it_lasts() {
    use std::sync::atomic::Ordering;
    let upstream = counting_upstream().await;
    let gw = gateway(&site_config(&format!("http://{}", upstream.addr), "", "")).await;
    let (mut a, mut b) = (keep_alive(&gw).await, keep_alive(&gw).await);
    // Interleaved requests: each client connection stays on its own upstream connection.
    let first_a = which_connection(&mut a, &gw).await;
    let first_b = which_connection(&mut b, &gw).await;
    assert_ne!(first_a, first_b, "two client connections share an upstream connection");
    for _ in 0..5 {
        assert_eq!(which_connection(&mut a, &gw).await, first_a);
        assert_eq!(which_connection(&mut b, &gw).await, first_b);
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2, "one upstream connection per client connection");
    // A client leaving closes its upstream connection: none is left idle behind it.
    drop((a, b));
    tokio::time::timeout(BOUND, async {
        loop {
            let closed = upstream.closed.notified();
            if upstream.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    })
    .await
    .expect("the upstream connections outlived their client connections");
}

#[tokio::test]
async fn an_upstream_that_closes_after_each_answer_is_reconnected_on_the_next_request() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    let mut res = Response::new(full("bye"));
                    res.headers_mut().insert(http::header::CONNECTION, "close".parse().unwrap());
                    Ok::<_, Infallible>(res)
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    let gw = gateway(&site_config(&format!("http://{addr}"), "", "")).await;
    let mut client = keep_alive(&gw).await;
    for _ in 0..3 {
        assert_eq!(which_connection(&mut client, &gw).await, "bye");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "each request after a close opened a new upstream connection");
}

#[tokio::test]
async fn an_upstream_connection_that_timed_out_is_closed_not_kept() {
    // The upstream reads the request, never answers, and reports when its
    // connection is closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = closed.send(());
            });
        }
    });
    let gw = gateway(&site_config(&format!("http://{addr}"), "upstream_timeout = \"200ms\"", "")).await;
    let mut client = keep_alive(&gw).await;
    client.ready().await.unwrap();
    let req = Request::get("/hang").header(http::header::HOST, gw.addr.to_string()).body(Full::default()).unwrap();
    let res = tokio::time::timeout(BOUND, client.send_request(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    // The client connection stays open; the upstream connection it used must not.
    tokio::time::timeout(BOUND, closed_rx.recv()).await.expect("the timed-out upstream connection was kept open");
    assert!(!client.is_closed());
}

/// Sends `raw` on a new connection to the gateway and reads the answer to its end.
async fn raw_exchange(gw: &Gateway, raw: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_http10_request_without_host_reaches_the_site_with_one() {
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    // Both ways through: the kept-alive connection's own upstream connection, and the pool.
    let answer =
        raw_exchange(&gw, "GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /last HTTP/1.0\r\n\r\n").await;
    assert_eq!(answer.matches(" 200 OK\r\n").count(), 2, "{answer}");
    let host = format!(r#"["host","{upstream}"]"#);
    assert_eq!(answer.matches(&host).count(), 2, "{answer}");
}

#[tokio::test]
async fn last_requests_use_the_shared_pool_not_a_connection_of_their_own() {
    use std::sync::atomic::Ordering;
    let upstream = counting_upstream().await;
    let gw = gateway(&site_config(&format!("http://{}", upstream.addr), "", "")).await;
    let last_requests =
        ["GET /a HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n", "GET /b HTTP/1.0\r\nHost: site\r\n\r\n"];
    for raw in last_requests.iter().cycle().take(8) {
        let answer = raw_exchange(&gw, raw).await;
        assert!(answer.contains("200 OK"), "{answer}");
    }
    // A lane each would be 8 upstream connections; the pools (one per worker
    // thread) reuse theirs.
    let accepted = upstream.accepted.load(Ordering::SeqCst);
    assert!(accepted <= 4, "{accepted} upstream connections for 8 one-request client connections");
}

#[tokio::test]
async fn the_site_hears_the_host_its_site_was_chosen_by() {
    // Absolute form: the URI's authority picks the site (RFC 9112 §3.2.2), so
    // the site must hear that one, not a different Host header.
    let upstream = echo_upstream().await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "", "")).await;
    let answer = raw_exchange(
        &gw,
        "GET http://public.example/x HTTP/1.1\r\nHost: protected.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(echoed(&json, "host"), vec!["public.example"], "{answer}");
    assert_eq!(echoed(&json, "x-forwarded-host"), vec!["public.example"]);
}

/// A keep-alive connection's requests share one deadline timer, re-armed per
/// request: each request gets the whole `upstream_timeout` from its own
/// start — after fast requests, after the timer has fired while idle, and
/// again after a timeout.
#[tokio::test]
async fn every_request_on_a_connection_gets_its_own_whole_upstream_timeout() {
    let upstream = serve(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        } else if req.uri().path() == "/medium" {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Response::new(full("ok"))
    })
    .await;
    let gw = gateway(&site_config(&format!("http://{upstream}"), "upstream_timeout = \"400ms\"", "")).await;
    let mut client = keep_alive(&gw).await;
    let mut ask = async |path: &str| {
        client.ready().await.unwrap();
        let req = Request::get(path).header(http::header::HOST, gw.addr.to_string()).body(Full::default()).unwrap();
        let started = std::time::Instant::now();
        let res = tokio::time::timeout(BOUND, client.send_request(req)).await.unwrap().unwrap();
        (res.status(), started.elapsed())
    };
    assert_eq!(ask("/fast").await.0, StatusCode::OK);
    // 250 ms into a 400 ms deadline, twice in a row: a deadline carried over
    // from the request before would cut the second one short.
    assert_eq!(ask("/medium").await.0, StatusCode::OK);
    assert_eq!(ask("/medium").await.0, StatusCode::OK);
    // Idle past the first requests' deadlines: the timer fired with nobody waiting.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ask("/medium").await.0, StatusCode::OK);
    let (status, took) = ask("/slow").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(took >= Duration::from_millis(390) && took < Duration::from_millis(1400), "took {took:?}");
    assert_eq!(
        ask("/medium").await.0,
        StatusCode::OK,
        "after a timeout the connection's next request has its whole time"
    );
}
