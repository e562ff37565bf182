//! Real-browser end-to-end tests of the three flows: headless Chromium
//! (Debian's `chromium`) driven by playwright-core (`tests/browser/flows.mjs`)
//! against the demo's site, providers and portal behind the real server.
//!
//! Needs Chromium, Node and the npm packages: without them the test fails
//! with a message naming what is missing (`scripts/test` installs them).

use ferrygate_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;
use ferrygate_demo::{Demo, USERS};
use http::{Request, Response};
use hyper::body::Incoming;

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// Everything the suite needs must be here; fails, naming it, when not.
fn require_tools() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let missing: Vec<&str> = [
        (!Path::new(&chromium()).exists()).then_some("chromium (apt-get install -y chromium chromium-driver)"),
        Command::new("node").arg("--version").output().is_err().then_some("node"),
        (!dir.join("node_modules/playwright-core").exists()).then_some("playwright-core (npm ci in tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Never a silent pass: a missing dependency fails the test, naming it.
    assert!(missing.is_empty(), "the browser suite cannot run: missing {missing:?}; scripts/test installs them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_flows_in_a_real_browser() {
    require_tools();
    let demo = Demo::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ferrygate::from_toml(&demo.config_toml(addr), ".".as_ref()).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server =
        ferrygate_server::Server::with_listeners(gateway.gateway_layer().clone(), vec![listener]).await.unwrap();
    let base = format!("http://{addr}");
    demo.set_gateway_url(&base);
    tokio::spawn(server.run(std::future::pending()));

    // Another origin, whose page posts a login form to the gateway on load.
    let target = format!("{base}/login");
    let attacker = serve(move |_req: Request<Incoming>| {
        let target = target.clone();
        async move {
            let page = format!(
                r#"<!doctype html><html><body onload="document.forms[0].submit()">
<form method="post" action="{target}"><input name="email" value="{}"><input name="password" value="{}"></form></body></html>"#,
                USERS[0].email, USERS[0].password
            );
            Response::builder().header("content-type", "text/html").body(full(page)).unwrap()
        }
    })
    .await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/flows.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("BASE_URL", &base)
        .env("ATTACKER_URL", format!("http://{attacker}/"))
        .env("SCREENSHOT_DIR", &shots)
        .env("DEMO_EMAIL", USERS[0].email)
        .env("DEMO_PASSWORD", USERS[0].password)
        .env("DEMO_EMAIL2", USERS[1].email)
        .env("CHROMIUM", chromium())
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}browser suite took {:?}", String::from_utf8_lossy(&out.stderr), started.elapsed());
    assert!(out.status.success(), "browser scenarios failed:\n{report}");
    assert_eq!(report.lines().filter(|l| l.starts_with("ok ")).count(), 9, "{report}");
}
