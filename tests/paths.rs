//! What the site receives is what was decided (SPEC 2): encoded separators,
//! dot segments in every spelling and fragments never take a request past
//! `protected_paths` or a rule, and the path a site reads is the normal form
//! the decision matched. The site here is an echo that routes on nothing, so
//! every test reads the exact target it received.

use ferrygate_testkit as common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    gw: Gateway,
    _mock: Mock,
    _dir: tempfile::TempDir,
}

/// A rest site: `/app` protected, `/admin` for admins; alice is an admin, bob staff.
async fn setup(server_extra: &str) -> Setup {
    setup_with(server_extra, "").await
}

/// As [`setup`], with `rules` appended to the site (more `[[sites.authorize]]`).
async fn setup_with(server_extra: &str, rules: &str) -> Setup {
    let mock = Mock::start(200, "{}", Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "email,user_id,external_id,org_id,groups\nalice@corp.example,1,,7,admins\nbob@corp.example,2,,7,staff\n",
    )
    .unwrap();
    let table = format!("kind = \"rest\"\nurl = \"http://{}/check\"\nusers = \"users.csv\"", mock.addr);
    // `gateway_in` opens [server] first: `server_extra` lands in it.
    let gw = gateway_in(&(staff_config(server_extra, "", &table, upstream) + rules), dir.path()).await;
    Setup { gw, _mock: mock, _dir: dir }
}

async fn sign_in(gw: &Gateway, email: &str) -> String {
    let res = post_form(&gw.url("/login"), &[("email", email), ("password", "pw")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    cookie_pair(&res)
}

async fn fetch(gw: &Gateway, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = Request::get(gw.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    send(req.body(Full::default()).unwrap()).await
}

/// The target the site received.
fn received(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()["uri"].as_str().unwrap().to_owned()
}

/// Sends a raw request line (which no client library would send) and returns the status line.
async fn raw(addr: SocketAddr, target: &str, cookie: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: corp\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await.expect("no answer").unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn encoded_separators_are_refused_before_any_decision() {
    let s = setup("").await;
    let bob = sign_in(&s.gw, "bob@corp.example").await;
    for path in [
        "/app/reports/..%2F..%2F..%2Fpublic",
        "/app/reports/..%2f..%2fpublic",
        "/app/reports/..%5C..%5Cpublic",
        "/admin/users/7%2F..%2F..%2F..%2Fx",
        "/admin/users/7%5c..%5c..%5cx",
        "/public/%2Fadmin",
    ] {
        for cookie in [None, Some(bob.as_str())] {
            let res = fetch(&s.gw, path, cookie).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.text());
            assert!(res.text().contains("allow_encoded_slashes"), "{}", res.text());
        }
    }
    // A raw backslash (no client library sends one).
    let answer = raw(s.gw.addr, "/admin\\x", &bob).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn dot_segments_are_resolved_and_the_site_receives_the_resolved_path() {
    let s = setup("").await;
    let bob = sign_in(&s.gw, "bob@corp.example").await;
    let alice = sign_in(&s.gw, "alice@corp.example").await;
    // Out of a protected area: the site reads the unprotected path decided on.
    for (path, want) in [
        ("/admin/files/x/../../../public", "/public"),
        ("/app/reports/%2e%2e/%2E%2E/public", "/public"),
        ("/app/x/../..", "/"),
        ("/public/./a//b/", "/public/a/b/"),
        ("/public/%7Euser/%41?q=%2F", "/public/~user/A?q=%2F"),
    ] {
        assert_eq!(received(&fetch(&s.gw, path, None).await), want, "{path}");
        assert_eq!(received(&fetch(&s.gw, path, Some(&bob)).await), want, "{path}");
    }
    // Into one: the decision is the rule's, and the site reads the rule's path.
    for path in ["/public/../admin/users/7", "/x/%2e%2E/admin/users/7", "//admin/users/7", "/%61dmin/users/7"] {
        let res = fetch(&s.gw, path, Some(&bob)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}: bob reached {}", res.text());
        assert_eq!(received(&fetch(&s.gw, path, Some(&alice)).await), "/admin/users/7", "{path}");
        let res = fetch(&s.gw, path, None).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{path}");
    }
    for path in ["/public/../app/reports", "/x/%2e%2e/APP/reports"] {
        let res = fetch(&s.gw, path, None).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{path}: reached {}", res.text());
        assert_eq!(received(&fetch(&s.gw, path, Some(&bob)).await).to_lowercase(), "/app/reports", "{path}");
    }
    // `..;` (resolved as `..` by Tomcat-style servers): refused.
    assert_eq!(fetch(&s.gw, "/public/..;/admin", Some(&bob)).await.status, StatusCode::BAD_REQUEST);
    // A fragment is never part of the path (sent raw: clients strip it).
    let answer = raw(s.gw.addr, "/admin#frag", &bob).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(s.gw.addr, "/public#/../admin", &bob).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"uri\":\"/public\""), "{answer}");
}

#[tokio::test]
async fn with_allow_encoded_slashes_they_pass_encoded_and_are_ordinary_characters() {
    let s = setup("allow_encoded_slashes = true").await;
    let bob = sign_in(&s.gw, "bob@corp.example").await;
    // Under /app, whatever follows: a sign-in first.
    let res = fetch(&s.gw, "/app/reports/..%2F..%2F..%2Fpublic", None).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(
        received(&fetch(&s.gw, "/app/reports/..%2f..%2F..%5cpublic", Some(&bob)).await),
        "/app/reports/..%2F..%2F..%5Cpublic"
    );
    // Under /admin: the rule's, whatever follows.
    let res = fetch(&s.gw, "/admin/users/7%2F..%2F..%2F..%2Fx", Some(&bob)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(received(&fetch(&s.gw, "/public%2Fadmin", Some(&bob)).await), "/public%2Fadmin");
    let answer = raw(s.gw.addr, "/public\\admin", &bob).await;
    assert!(answer.contains("\"uri\":\"/public%5Cadmin\""), "{answer}");
}

/// How a router that decodes every escape and resolves dot segments reads a
/// path (Express and many frameworks; the red team's upstream): its
/// segments, lower-cased, `;parameters` dropped, `\` a separator.
fn read_by_a_lenient_router(path: &str) -> Vec<String> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy().to_lowercase();
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_owned()),
        }
    }
    out
}

/// For random paths through the real gateway: whatever reaches the site is
/// the normal form the decision was made on, and a router that decodes and
/// resolves everything reads it as segments the decision let through (never
/// under `/app` without a session, never under `/admin` for bob).
#[test]
fn no_path_reaching_the_site_differs_from_the_one_decided_on() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (s, bob) = rt.block_on(async {
        let s = setup("").await;
        let bob = sign_in(&s.gw, "bob@corp.example").await;
        (s, bob)
    });
    let piece =
        "(/|//|/\\.|/\\.\\.|/%2[eE]|/%2[eE]%2[eE]|/%2[fF]|/%5[cC]|/[aA][dD]min|/[aA]pp|/public|/x|;p|%41|%7[eE]|/%25)";
    let strategy = proptest::string::string_regex(&format!("/{piece}{{1,8}}")).unwrap();
    let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
    let under = |segments: &[String], prefix: &str| segments.first().is_some_and(|s| s == prefix);
    runner
        .run(&strategy, |raw| {
            for cookie in [None, Some(bob.as_str())] {
                let res = rt.block_on(fetch(&s.gw, &raw, cookie));
                let status = res.status.as_u16();
                if status != 200 {
                    proptest::prop_assert!(matches!(status, 303 | 400 | 403), "{raw}: {status}");
                    continue;
                }
                let received = res.json()["uri"].as_str().unwrap().to_owned();
                let normal = ferrygate::core::path::normal(&raw, false).unwrap().into_owned();
                proptest::prop_assert_eq!(&received, &normal, "{}", raw);
                let read = read_by_a_lenient_router(&received);
                proptest::prop_assert!(!under(&read, "admin"), "{raw}: the site read {read:?}");
                if cookie.is_none() {
                    proptest::prop_assert!(!under(&read, "app"), "{raw}: the site read {read:?} without a session");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// SPEC 2.2 for every spelling of a path: a method-scoped rule and a public
/// hole decide alike however the path is written (random spellings through
/// the real gateway: case, dot segments, escapes, parameters, slashes).
#[test]
fn a_rule_decides_the_same_for_every_spelling_of_its_path() {
    use proptest::test_runner::{Config, TestRunner};
    let rules = "\n[[sites.authorize]]\npaths = [\"/reports\"]\nmethods = [\"POST\"]\ngroups = [\"admins\"]\n\
                 \n[[sites.authorize]]\npaths = [\"/app/public\"]\npublic = true\n";
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (s, bob) = rt.block_on(async {
        let s = setup_with("", rules).await;
        let bob = sign_in(&s.gw, "bob@corp.example").await;
        (s, bob)
    });
    let spelling = |word: &str| {
        let letters: String =
            word.chars().map(|c| format!("([{}{}]|%{:02X})", c, c.to_ascii_uppercase(), c as u32)).collect();
        format!("(/|//|/\\.|/x/\\.\\.|/x/%2[eE]%2[eE])?/{letters}(;p)?")
    };
    let reports = proptest::string::string_regex(&format!("{}(/q3)?/?", spelling("reports"))).unwrap();
    let public = proptest::string::string_regex(&format!("{}{}(/x)?", spelling("app"), spelling("public"))).unwrap();
    let mut runner = TestRunner::new(Config { cases: 128, failure_persistence: None, ..Config::default() });
    let status = |method: &str, raw: &str, cookie: Option<&str>| {
        let mut req = Request::builder().method(method).uri(s.gw.url(raw)).header("accept", "application/json");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        rt.block_on(send(req.body(Full::default()).unwrap())).status.as_u16()
    };
    runner
        .run(&reports, |raw| {
            proptest::prop_assert_eq!(status("POST", &raw, Some(&bob)), 403, "POST {} as bob", raw);
            proptest::prop_assert_eq!(status("GET", &raw, Some(&bob)), 200, "GET {} as bob", raw);
            Ok(())
        })
        .unwrap();
    runner
        .run(&public, |raw| {
            proptest::prop_assert_eq!(status("GET", &raw, None), 200, "GET {} without a session", raw);
            Ok(())
        })
        .unwrap();
    // Beside the hole, `/app` stays protected.
    assert_eq!(status("GET", "/app/publicity", None), 303);
}
