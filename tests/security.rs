//! Security properties end to end: brute-force limits, enumeration timing,
//! HSTS, CSRF scheme, and request smuggling at the edge.

use ferrygate_testkit as common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = r#"{"access_token":"t","token_type":"bearer","expires_in":600}"#;

fn limits(ip: &str, account: &str) -> String {
    format!("[limits]\nlogin_per_ip = \"{ip}\"\nlogin_per_account = \"{account}\"\n")
}

/// A qwyk gateway with `[limits]` appended.
async fn limited(status: u16, ip: &str, account: &str) -> (Mock, Gateway) {
    let mock = Mock::start(status, if status == 200 { TOKEN } else { "{}" }, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let config = format!("{}\n{}", qwyk_config(mock.addr, upstream, "", ""), limits(ip, account));
    (mock, gateway(&config).await)
}

#[tokio::test]
async fn every_login_post_counts_against_the_client_address() {
    let (mock, gw) = limited(200, "3/min", "100/min").await;
    for i in 0..3 {
        let res =
            post_json(&gw.url("/login"), serde_json::json!({"email": format!("u{i}@x.example"), "password": "pw"}))
                .await;
        assert_eq!(res.status, StatusCode::OK, "login {i}");
    }
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "u9@x.example", "password": "pw"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.json()["error"], "rate_limited");
    let retry: u64 = res.header("retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(mock.requests().len(), 3, "the refused attempt never reached the provider");
    let res = post_form(&gw.url("/login"), &[("email", "u9@x.example"), ("password", "pw")]).await;
    assert_eq!(param(&res.location(), "error").as_deref(), Some("rate_limited"));
}

#[tokio::test]
async fn unicode_spellings_share_one_account_bucket_and_invisible_characters_are_refused() {
    let (mock, gw) = limited(401, "1000/min", "3/min").await;
    for email in ["\u{ff56}ictim@x.example", "VICTIM@x.example.", "victim@x.example"] {
        let res = post_json(&gw.url("/login"), serde_json::json!({"email": email, "password": "wrong"})).await;
        assert_eq!(res.json()["error"], "invalid_credentials", "{email}");
    }
    let res =
        post_json(&gw.url("/login"), serde_json::json!({"email": "\u{FF56}ictim@x.example", "password": "x"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "a fullwidth spelling got a fresh bucket");
    assert_eq!(mock.requests().len(), 3);
    // Control and format characters: refused, nothing sent.
    for email in ["victim@x.example\u{200b}", "\u{200b}bob@x.example", "bob\u{202e}@x.example", "bob\u{7}@x.example"] {
        let res = post_json(&gw.url("/login"), serde_json::json!({"email": email, "password": "pw"})).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{email:?}");
        assert_eq!(res.json()["error"], "invalid_input", "{email:?}");
    }
    assert_eq!(mock.requests().len(), 3, "a refused name reached the provider");
}

#[tokio::test]
async fn failed_attempts_count_against_the_normalised_account() {
    let (mock, gw) = limited(401, "1000/min", "3/min").await;
    for email in ["Alice@X.example", " alice@x.example ", "ALICE@x.EXAMPLE"] {
        let res = post_json(&gw.url("/login"), serde_json::json!({"email": email, "password": "wrong"})).await;
        assert_eq!(res.json()["error"], "invalid_credentials", "{email}");
    }
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "alice@x.example", "password": "right"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers.contains_key("retry-after"));
    assert_eq!(mock.requests().len(), 3);
    // Another account is unaffected.
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "bob@x.example", "password": "wrong"})).await;
    assert_eq!(res.json()["error"], "invalid_credentials");
}

#[tokio::test]
async fn an_unknown_account_takes_as_long_as_a_wrong_password() {
    // The rest adapter knows which accounts exist; the answer and its timing must not tell.
    let mock = Mock::start(401, "{}", Duration::from_millis(4)).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "email,user_id,external_id,org_id\nknown@corp.example,1,e,7\n")
        .unwrap();
    let config = format!(
        "[sessions]\nsecret = \"{SECRET}\"\n{}\n[providers.corp]\nkind = \"rest\"\nurl = \"http://{}/auth\"\nusers = \"users.csv\"\n\
         [[sites]]\nname = \"corp\"\nupstream = \"http://{upstream}\"\nprovider = \"corp\"\n[sites.login]\npath = \"/login\"\n",
        limits("100000/sec", "100000/sec"),
        mock.addr
    );
    let gw = gateway_in(&config, dir.path()).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut bodies = std::collections::HashSet::new();
    for i in 0..200 {
        for (email, into) in [("known@corp.example", &mut known), ("nobody@corp.example", &mut unknown)] {
            let started = Instant::now();
            let res =
                post_json(&gw.url("/login"), serde_json::json!({"email": email, "password": format!("wrong{i}")}))
                    .await;
            into.push(started.elapsed());
            bodies.insert((res.status, res.body));
        }
    }
    assert_eq!(bodies.len(), 1, "byte-identical answers: {bodies:?}");
    assert_eq!(mock.requests().len(), 200, "only the known account reached the service");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    eprintln!("median wrong password {k:?}, unknown account {u:?}, ratio {ratio:.2}");
    assert!((0.5..=2.0).contains(&ratio), "median wrong password {k:?}, unknown account {u:?}, ratio {ratio:.2}");
}

#[tokio::test]
async fn hsts_on_our_https_answers_only() {
    let (_m, gw) = limited(200, "100/min", "100/min").await;
    let plain = get(&gw.url("/portal-home")).await;
    assert!(plain.headers.get("strict-transport-security").is_none());

    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw =
        gateway(&qwyk_config(mock.addr, upstream, "trusted_proxies = [\"127.0.0.1/32\"]\nhsts_max_age = \"1h\"", ""))
            .await;
    let via_https =
        |path: &str| Request::get(gw.url(path)).header("x-forwarded-proto", "https").body(Full::default()).unwrap();
    assert_eq!(send(via_https("/portal-home")).await.header("strict-transport-security"), "max-age=3600");
    let res = send(
        Request::post(gw.url("/login"))
            .header("x-forwarded-proto", "https")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(r#"{"email":"a@b.example","password":"x"}"#)))
            .unwrap(),
    )
    .await;
    assert_eq!(res.header("strict-transport-security"), "max-age=3600");
    assert!(
        send(via_https("/anything")).await.headers.get("strict-transport-security").is_none(),
        "the site's own answers are its business"
    );
}

#[tokio::test]
async fn an_http_origin_cannot_post_to_an_https_login() {
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(
        mock.addr,
        upstream,
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "hosts = [\"www.acme.example\"]",
    ))
    .await;
    let post = |origin: &'static str| {
        Request::post(gw.url("/login"))
            .header("host", "www.acme.example")
            .header("x-forwarded-proto", "https")
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(r#"{"email":"a@b.example","password":"x"}"#)))
            .unwrap()
    };
    assert_eq!(send(post("http://www.acme.example")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(post("https://www.acme.example")).await.status, StatusCode::OK);
}

/// Sends raw bytes and returns the status line and whether the connection then closed.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("no answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn smuggling_attempts_are_refused_or_reframed_never_passed_on() {
    let mock = Mock::start(200, "{}", Duration::ZERO).await; // stands in for the site: records what reaches it
    let gw = gateway(&qwyk_config("127.0.0.1:9".parse().unwrap(), mock.addr, "", "")).await;
    let refused: [&[u8]; 4] = [
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n",
        b"POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for case in refused {
        let status = raw(gw.addr, case).await;
        assert!(status.starts_with("HTTP/1.1 4"), "{:?} answered {status}", String::from_utf8_lossy(case));
    }
    let mut huge = b"GET /x HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..200 {
        huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(100)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    let status = raw(gw.addr, &huge).await;
    assert!(status.starts_with("HTTP/1.1 4"), "oversized headers answered {status}");
    // A well-formed request after them: once it has been answered, anything
    // forwarded before it has reached the site too.
    let paths = || mock.requests().iter().map(|r| r.path.clone()).collect::<Vec<_>>();
    assert_eq!(raw(gw.addr, b"GET /sentinel HTTP/1.1\r\nHost: a\r\n\r\n").await, "HTTP/1.1 200 OK");
    assert_eq!(paths(), vec!["/sentinel"], "nothing malformed was forwarded");

    // CL.TE: hyper follows RFC 9112 §6.1 (Transfer-Encoding wins, Content-Length is
    // dropped) and the body is re-framed before it goes on, so the site can never
    // read the tail of one request as the start of another.
    let status = raw(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK", "the re-framed POST is answered");
    assert_eq!(raw(gw.addr, b"GET /sentinel HTTP/1.1\r\nHost: a\r\n\r\n").await, "HTTP/1.1 200 OK");
    let reached = paths();
    // (The trailing GET is the client's own next request on its connection:
    // it may reach the site as one, never inside the POST's body.)
    assert_eq!(reached.iter().filter(|p| *p == "/x").count(), 1, "{reached:?}");
    for r in mock.requests() {
        assert!(!String::from_utf8_lossy(&r.body).contains("smuggled"), "a smuggled request rode in a body");
        assert!(
            !(r.headers.contains_key("content-length") && r.headers.contains_key("transfer-encoding")),
            "ambiguous framing forwarded"
        );
        if r.path == "/x" {
            assert!(r.body.is_empty());
        }
    }
}

#[tokio::test]
async fn concurrent_guesses_for_one_account_reach_the_provider_one_at_a_time() {
    let mock = Mock::start(401, "{}", Duration::from_millis(300)).await;
    let upstream = echo_upstream().await;
    let config = format!("{}\n{}", qwyk_config(mock.addr, upstream, "", ""), limits("1000/min", "1000/min"));
    let gw = std::sync::Arc::new(gateway(&config).await);
    let guesses: Vec<_> = (0..5)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move {
                post_json(
                    &gw.url("/login"),
                    serde_json::json!({"email": "victim@x.example", "password": format!("guess{i}")}),
                )
                .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for g in guesses {
        codes.push(g.await.unwrap().json()["error"].as_str().unwrap().to_owned());
    }
    assert_eq!(mock.requests().len(), 1, "only one guess at a time reaches the provider: {codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "rate_limited").count(), 4, "{codes:?}");
}

#[tokio::test]
async fn forgot_password_posts_count_against_the_client_address() {
    let mock = Mock::start(200, "{}", Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "email,user_id,external_id,org_id\nann@corp.example,1,e,7\n").unwrap();
    let config = format!(
        "[sessions]\nsecret = \"{SECRET}\"\n{}\n[providers.r]\nkind = \"rest\"\nurl = \"http://{}/auth\"\nusers = \"users.csv\"\n\
         forgot_password_url = \"http://{}/forgot?e={{{{USEREMAIL}}}}\"\n[[sites]]\nname = \"c\"\nupstream = \"http://{upstream}\"\nprovider = \"r\"\n\
         [sites.login]\npath = \"/login\"\n[sites.forgot_password]\npath = \"/forgot\"\nredirect = \"/forgot?sent=1\"\n",
        limits("2/min", "5/min"),
        mock.addr,
        mock.addr
    );
    let gw = gateway_in(&config, dir.path()).await;
    for _ in 0..2 {
        let res = post_json(&gw.url("/forgot"), serde_json::json!({"email": "ann@corp.example"})).await;
        assert_eq!(res.status, StatusCode::ACCEPTED);
    }
    let res = post_json(&gw.url("/forgot"), serde_json::json!({"email": "ann@corp.example"})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers.contains_key("retry-after"));
}

/// A browser's `Origin` names the host and port it typed; behind a trusted
/// proxy that reaches Ferrygate under another name, its `X-Forwarded-Host`
/// (and `X-Forwarded-Port` when the host names none) is the request's own
/// origin too — from anyone else, those headers count for nothing.
#[tokio::test]
async fn a_trusted_proxys_forwarded_host_and_port_are_the_requests_origin() {
    let mock = Mock::start(200, TOKEN, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    for (trusted, want) in [("127.0.0.1/32", StatusCode::OK), ("10.0.0.0/8", StatusCode::FORBIDDEN)] {
        let gw = gateway(&qwyk_config(mock.addr, upstream, &format!("trusted_proxies = [\"{trusted}\"]"), "")).await;
        let post = |forwarded: &[(&'static str, &'static str)]| {
            let mut r = Request::post(gw.url("/login"))
                .header("host", "ferrygate.internal:9000")
                .header("origin", "http://shop.example:8080")
                .header("sec-fetch-site", "same-origin")
                .header("content-type", "application/json");
            for (k, v) in forwarded {
                r = r.header(*k, *v);
            }
            r.body(Full::new(Bytes::from(r#"{"email":"a@b.example","password":"x"}"#))).unwrap()
        };
        let res = send(post(&[("x-forwarded-host", "shop.example:8080")])).await;
        assert_eq!(res.status, want, "{trusted}: host with port");
        let res = send(post(&[("x-forwarded-host", "shop.example"), ("x-forwarded-port", "8080")])).await;
        assert_eq!(res.status, want, "{trusted}: host and port apart");
        // The port must be the origin's.
        let res = send(post(&[("x-forwarded-host", "shop.example"), ("x-forwarded-port", "9090")])).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{trusted}: another port");
    }
}
