//! `ferrygate demo`'s parts, started in-process: the newcomer's journey.

mod common;

use common::*;
use ferrygate::demo::{Demo, USERS};

async fn start() -> (Demo, String) {
    let demo = Demo::start().await.unwrap();
    let config = demo.config_toml("127.0.0.1:0".parse().unwrap());
    let config = ferrygate::Config::from_toml(&config, ".".as_ref()).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate::server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let base = format!("http://{}", server.local_addrs()[0]);
    demo.set_gateway_url(&base);
    tokio::spawn(server.run(std::future::pending()));
    (demo, base)
}

#[tokio::test]
async fn a_newcomer_logs_in_and_lands_in_the_portal() {
    let (_demo, base) = start().await;
    let landing = get(&format!("{base}/")).await;
    assert!(landing.text().contains("Northwind Freight"));
    let form = get(&format!("{base}/login")).await;
    assert!(form.text().contains(r#"<form method="post" action="/login">"#));

    let user = USERS[0];
    let res = post_form(&format!("{base}/login"), &[("email", user.email), ("password", user.password)]).await;
    assert_eq!(res.status, 303);
    let portal = get(res.header("location")).await;
    assert_eq!(portal.status, 200, "{}", portal.text());
    let page = portal.text();
    assert!(page.contains(&format!("Signed in as {}", user.name)), "{page}");
    assert!(page.contains(r#"<dd id="destination">/my-portal</dd>"#), "{page}");
    assert!(page.contains("expires in <span id=\"expires\">1h 59m</span>") || page.contains("2h 00m"), "{page}");
    assert!(page.contains(&format!("{base}/portal-logout")));

    let home = get(&format!("{base}/portal-home")).await;
    assert_eq!(home.header("location"), "/");
    let logout = get(&format!("{base}/portal-logout")).await;
    assert_eq!(logout.header("location"), "/goodbye");
    assert!(get(&format!("{base}/goodbye")).await.text().contains("You are signed out"));
}

#[tokio::test]
async fn a_wrong_password_shows_a_friendly_error_and_an_empty_password_field() {
    let (_demo, base) = start().await;
    let res = post_form(&format!("{base}/login"), &[("email", USERS[0].email), ("password", "nope")]).await;
    assert_eq!(res.header("location"), "/login?error=invalid_credentials");
    let page = get(&format!("{base}/login?error=invalid_credentials")).await.text();
    assert!(page.contains("That email address and password do not match an account"), "{page}");
    assert!(page.contains(r#"type="password" autocomplete="current-password" value="""#), "{page}");
    assert!(!page.contains("nope"));
}

#[tokio::test]
async fn the_booking_wizard_lands_at_the_quotation_page_with_the_route() {
    let (_demo, base) = start().await;
    let user = USERS[1];
    let res = post_form(
        &format!("{base}/book"),
        &[
            ("origin", "NLRTM"),
            ("destination_port", "USNYC"),
            ("cargo_type", "reefer"),
            ("product", "fcl"),
            ("email", user.email),
            ("password", user.password),
        ],
    )
    .await;
    let page = get(res.header("location")).await.text();
    assert!(
        page.contains(
            "/my-portal/quotations/new?origin=NLRTM&amp;destination_port=USNYC&amp;cargo_type=reefer&amp;product=fcl"
        ),
        "{page}"
    );
}
