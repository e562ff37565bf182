//! Ferrygate's own refusals are a small accessible HTML page for a browser
//! that asks for HTML (its status, headers and code kept), short text for
//! other clients and JSON for JSON clients (SPEC 3); the site's own answers,
//! errors included, are never touched.

use ferrygate_testkit as common;

use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

struct Setup {
    gw: Gateway,
    _mock: Mock,
    _dir: tempfile::TempDir,
}

async fn setup(upstream: std::net::SocketAddr) -> Setup {
    let mock = Mock::start(200, "{}", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "email,user_id,external_id,org_id,groups\nbob@corp.example,2,,7,staff\n",
    )
    .unwrap();
    let table = format!("kind = \"rest\"\nurl = \"http://{}/check\"\nusers = \"users.csv\"", mock.addr);
    let config = staff_config("", "", &table, upstream).replace(
        "protected_paths = [\"/app\"]",
        "protected_paths = [\"/app\"]\nerror_stylesheet = \"/css/site.css\"\nhosts = [\"corp.test\"]",
    );
    Setup { gw: gateway_in(&config, dir.path()).await, _mock: mock, _dir: dir }
}

async fn get_as(gw: &Gateway, path: &str, host: &str, accept: Option<&str>, cookie: Option<&str>) -> Answer {
    let mut r = Request::get(gw.url(path)).header("host", host);
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    send(r.body(Full::default()).unwrap()).await
}

fn is_page(res: &Answer, status: StatusCode, code: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), "text/html; charset=utf-8");
    let page = res.text();
    assert!(page.starts_with("<!doctype html>") && page.contains("<html lang=\"en\">"), "{page}");
    assert!(page.contains("<title>") && page.contains("<h1>") && page.contains("<main>"), "{page}");
    assert!(page.contains(&format!("<code>{code}</code>")), "{code}: {page}");
    assert!(page.contains("<a href=\"/\">"), "a way back: {page}");
}

#[tokio::test]
async fn browsers_get_a_page_other_clients_the_code() {
    let s = setup(echo_upstream().await).await;
    let login = Request::post(s.gw.url("/login"))
        .header("host", "corp.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from("email=bob%40corp.example&password=pw")))
        .unwrap();
    let bob = cookie_pair(&send(login).await);
    // A rule's refusal.
    let res = get_as(&s.gw, "/admin", "corp.test", Some(BROWSER), Some(&bob)).await;
    is_page(&res, StatusCode::FORBIDDEN, "forbidden");
    assert!(res.text().contains("<link rel=\"stylesheet\" href=\"/css/site.css\">"), "the site's stylesheet");
    assert!(res.text().contains("href=\"/login\">Sign in</a>"), "{}", res.text());
    let res = get_as(&s.gw, "/admin", "corp.test", None, Some(&bob)).await;
    assert_eq!((res.status, res.text().as_str()), (StatusCode::FORBIDDEN, "forbidden\n"));
    let res = get_as(&s.gw, "/admin", "corp.test", Some("application/json"), Some(&bob)).await;
    assert_eq!(res.json()["error"], "forbidden");
    // A path refused before any site answers, and an unknown host.
    is_page(&get_as(&s.gw, "/a%2Fb", "corp.test", Some(BROWSER), None).await, StatusCode::BAD_REQUEST, "bad_path");
    is_page(
        &get_as(&s.gw, "/", "other.test", Some(BROWSER), None).await,
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected",
    );
    // A cross-site form post.
    let res = send(
        Request::post(s.gw.url("/login"))
            .header("host", "corp.test")
            .header("accept", BROWSER)
            .header("origin", "https://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(bytes::Bytes::from("email=bob%40corp.example&password=pw")))
            .unwrap(),
    )
    .await;
    is_page(&res, StatusCode::FORBIDDEN, "origin_rejected");
}

#[tokio::test]
async fn the_proxys_own_errors_are_pages_and_the_sites_errors_are_the_sites() {
    // Nothing listens there: the proxy's own 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let s = setup(closed).await;
    is_page(&get_as(&s.gw, "/page", "corp.test", Some(BROWSER), None).await, StatusCode::BAD_GATEWAY, "bad_gateway");
    let res = get_as(&s.gw, "/page", "corp.test", None, None).await;
    assert_eq!((res.status, res.text().as_str()), (StatusCode::BAD_GATEWAY, "bad gateway\n"));
    // The site's own 502 and 403 pages reach the browser as the site made them.
    let site = serve(|req: Request<hyper::body::Incoming>| async move {
        let status = if req.uri().path() == "/bad" { 502 } else { 403 };
        http::Response::builder()
            .status(status)
            .header("content-type", "text/html")
            .body(full(format!("<p>the site's own {status} page</p>")))
            .unwrap()
    })
    .await;
    let s = setup(site).await;
    for (path, status) in [("/bad", 502), ("/denied", 403)] {
        let res = get_as(&s.gw, path, "corp.test", Some(BROWSER), None).await;
        assert_eq!(res.status.as_u16(), status);
        assert_eq!(res.text(), format!("<p>the site's own {status} page</p>"));
    }
}
