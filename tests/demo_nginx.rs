//! `ferrygate demo --behind nginx` (the README's words): the binary's
//! command starts a real nginx running the shipped forward-auth snippet in
//! front of the demo intranet; a browser's requests (Host with its port,
//! `Origin`, `Sec-Fetch-Site`) sign in through it; stopping the command stops
//! nginx. Needs nginx (`scripts/test` installs it).

use ferrygate_testkit as common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferrygate_demo::USERS;
use http::{Request, StatusCode};
use http_body_util::Full;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_auth_example_runs_as_shipped_behind_nginx() {
    assert!(
        ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().any(|p| std::path::Path::new(p).exists()),
        "nginx is not installed: run scripts/test (it installs nginx)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrygate"))
        .args(["demo", "--behind", "nginx", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let banner = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(30)).ok())
        .find(|l| l.contains("Contoso Intranet"))
        .expect("no banner");
    let base = format!("http://127.0.0.1:{port}");
    assert!(banner.contains(&format!("{base}/")), "{banner}");
    let host = format!("intranet.example:{port}");
    let req = |method: &str, path: &str, cookie: Option<&str>, body: Option<String>| {
        let mut r = Request::builder().method(method).uri(format!("{base}{path}")).header("host", host.as_str());
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if body.is_some() {
            r = r
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", format!("http://{host}"))
                .header("sec-fetch-site", "same-origin");
        }
        r.body(Full::new(bytes::Bytes::from(body.unwrap_or_default()))).unwrap()
    };
    // Every page asks Ferrygate first: no session, to the login page.
    let res = send(req("GET", "/app", None, None)).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(res.header("location").ends_with("/login?destination=/app"), "{}", res.header("location"));
    let form = send(req("GET", "/login?destination=/app", None, None)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text().contains("<form"), "the site's own form");
    let sign_in = |user: &str| {
        req("POST", "/login", None, Some(format!("email={}&password={}", user.replace('@', "%40"), USERS[0].password)))
    };
    let res = send(sign_in(USERS[0].email)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(res.header("location"), "/app");
    let alice = cookie_pair(&res);
    let page = send(req("GET", "/app", Some(&alice), None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains(USERS[0].email), "{}", page.text());
    assert_eq!(send(req("GET", "/admin", Some(&alice), None)).await.status, StatusCode::OK);
    let bob = cookie_pair(&send(sign_in(USERS[1].email)).await);
    assert_eq!(send(req("GET", "/admin", Some(&bob), None)).await.status, StatusCode::FORBIDDEN);
    let out = send(req("GET", "/logout", Some(&alice), None)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(send(req("GET", "/app", Some(&alice), None)).await.status, StatusCode::FOUND);

    // Stopping the command stops nginx.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "nginx outlived the demo");
        std::thread::sleep(Duration::from_millis(20));
    }
}
