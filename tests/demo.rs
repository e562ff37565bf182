//! `ferrygate demo`'s parts, started in-process: the newcomer's journey.

use ferrygate_testkit as common;

use common::*;
use ferrygate_demo::{Demo, USERS};

async fn start() -> (Demo, String) {
    let demo = Demo::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = demo.config_toml(listener.local_addr().unwrap());
    let config = ferrygate::from_toml(&config, ".".as_ref()).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server =
        ferrygate_server::Server::with_listeners(gateway.gateway_layer().clone(), vec![listener]).await.unwrap();
    let base = format!("http://{}", server.local_addrs()[0]);
    demo.set_gateway_url(&base);
    tokio::spawn(server.run(std::future::pending()));
    (demo, base)
}

/// Requests to the gateway at `base` for the site `host` (the gateway's
/// port kept), with an optional cookie and form body.
fn on_host(
    base: &str,
    host: &str,
) -> impl Fn(http::Method, &str, Option<&str>, Option<String>) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let port = base.rsplit(':').next().unwrap();
    let (base, host) = (base.to_owned(), format!("{host}:{port}"));
    move |method, path, cookie, body| {
        let mut r = http::Request::builder().method(method).uri(format!("{base}{path}")).header("host", host.as_str());
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if body.is_some() {
            r = r.header("content-type", "application/x-www-form-urlencoded");
        }
        r.body(http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or_default()))).unwrap()
    }
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

#[tokio::test]
async fn a_subscriber_signs_in_through_the_payway_flow() {
    let (_demo, base) = start().await;
    let port = base.rsplit(':').next().unwrap();
    let news = format!("http://localhost:{port}");
    // The newspaper is the site for Host: localhost.
    let with_host = |path: &str| {
        http::Request::get(format!("{base}{path}"))
            .header("host", format!("localhost:{port}"))
            .body(http_body_util::Full::default())
            .unwrap()
    };
    assert!(send(with_host("/")).await.text().contains("The Daily Courant"));

    let user = USERS[0];
    let login = send(
        http::Request::post(format!("{base}/login"))
            .header("host", format!("localhost:{port}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                "email={}&password={}",
                user.email.replace('@', "%40"),
                user.password
            ))))
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.text());
    let auth = login.location();
    assert_eq!(auth.path(), "/oauth2/auth");
    let state_cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.contains("_state="))
        .unwrap();
    let session = cookie_pair(&login);

    // The demo authorization page sends the browser back to the landing page.
    let back = get(auth.as_str()).await;
    assert_eq!(back.status, 302);
    let landing = url::Url::parse(back.header("location")).unwrap();
    assert!(landing.as_str().starts_with(&format!("{news}/landing?code=")), "{landing}");
    let path = format!("{}?{}", landing.path(), landing.query().unwrap());
    let page = send(
        http::Request::get(format!("{base}{path}"))
            .header("host", format!("localhost:{port}"))
            .header("cookie", format!("{state_cookie}; {session}"))
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert!(
        text.contains(&format!("Welcome back, {}", user.email)) && text.contains("verified by Ferrygate"),
        "{text}"
    );
    assert!(text.contains(r#"<a href="/logout">Sign out</a>"#) && !text.contains("Subscriber login</a>"), "{text}");
    // The newspaper has a logout: the session ends, the nav offers the login again.
    let out = send(
        http::Request::get(format!("{base}/logout"))
            .header("host", format!("localhost:{port}"))
            .header("cookie", &session)
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!((out.status.as_u16(), out.header("location")), (303, "/"));
    let front = send(
        http::Request::get(format!("{base}/"))
            .header("host", format!("localhost:{port}"))
            .header("cookie", &session)
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert!(front.text().contains(r#"<a href="/login">Subscriber login</a>"#), "{}", front.text());
    // Without the state cookie the landing page is refused.
    let refused = send(with_host(&path)).await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn staff_sign_in_to_the_intranet_through_the_rest_flow() {
    let (_demo, base) = start().await;
    let req = on_host(&base, "intranet.localhost");
    let guarded = send(req(http::Method::GET, "/app", None, None)).await;
    assert_eq!(guarded.status, 303);
    assert_eq!(guarded.header("location"), "/login?destination=%2Fapp");

    let user = USERS[1];
    let form = format!("email={}&password={}&destination=%2Fapp", user.email.replace('@', "%40"), user.password);
    let login = send(req(http::Method::POST, "/login", None, Some(form))).await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), "/app");
    let cookie = cookie_pair(&login);
    let page = send(req(http::Method::GET, "/app", Some(&cookie), None)).await.text();
    assert!(page.contains(&format!("Hello, {}", user.email)), "{page}");
    assert!(page.contains(r#"<dd id="user-id">1002</dd>"#), "{page}");
    assert!(page.contains(r#"<dd id="groups">staff</dd>"#), "the groups header is shown: {page}");
    assert!(page.contains(r#"<a href="/logout">Sign out</a>"#) && !page.contains(">Sign in</a>"), "{page}");
    // Bob is staff, not an admin: /admin is closed to him; Alice gets in.
    let admin = send(req(http::Method::GET, "/admin", Some(&cookie), None)).await;
    assert_eq!(admin.status, 403, "{}", admin.text());
    let alice = USERS[0];
    let form = format!("email={}&password={}&destination=%2Fadmin", alice.email.replace('@', "%40"), alice.password);
    let login = send(req(http::Method::POST, "/login", None, Some(form))).await;
    assert_eq!(login.header("location"), "/admin", "the intranet keeps an /admin destination");
    let alice_cookie = cookie_pair(&login);
    let admin = send(req(http::Method::GET, "/admin", Some(&alice_cookie), None)).await;
    assert_eq!(admin.status, 200);
    assert!(admin.text().contains(r#"<span id="groups">admins,staff</span>"#), "{}", admin.text());

    let known = send(req(
        http::Method::POST,
        "/forgot-password",
        None,
        Some(format!("email={}", user.email.replace('@', "%40"))),
    ))
    .await;
    let unknown =
        send(req(http::Method::POST, "/forgot-password", None, Some("email=nobody%40example.com".into()))).await;
    assert_eq!((known.status, known.header("location")), (unknown.status, unknown.header("location")));
    let sent = send(req(http::Method::GET, known.header("location"), None, None)).await.text();
    assert!(sent.contains("If that address belongs to a Contoso account"));
}

#[tokio::test]
async fn staff_sign_in_to_the_staff_portal_through_the_oidc_flow() {
    let (demo, base) = start().await;
    let req = on_host(&base, "sso.localhost");
    // The embedded issuer publishes itself and an ES256 key.
    let discovery = get(&format!("http://{}/.well-known/openid-configuration", demo.issuer)).await.json();
    assert_eq!(discovery["issuer"], format!("http://{}", demo.issuer));
    let jwks = get(&format!("http://{}/jwks", demo.issuer)).await.json();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    let guarded = send(req(http::Method::GET, "/workspace", None, None)).await;
    assert_eq!(guarded.status, 303);
    assert_eq!(guarded.header("location"), "/login?destination=%2Fworkspace");
    let wrong = format!("email={}&password=wrong", USERS[0].email.replace('@', "%40"));
    let refused = send(req(http::Method::POST, "/login", None, Some(wrong))).await;
    assert_eq!(refused.status, 303);
    assert!(refused.header("location").contains("error=invalid_credentials"), "{}", refused.header("location"));

    let alice = USERS[0];
    let form =
        format!("email={}&password={}&destination=%2Fworkspace", alice.email.replace('@', "%40"), alice.password);
    let login = send(req(http::Method::POST, "/login", None, Some(form))).await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), "/workspace");
    let cookie = cookie_pair(&login);
    let page = send(req(http::Method::GET, "/workspace", Some(&cookie), None)).await.text();
    assert!(page.contains(&format!(r#"<dd id="user">{}</dd>"#, alice.email)), "{page}");
    assert!(page.contains(r#"<dd id="groups">admins,staff</dd>"#), "{page}");
    assert!(page.contains("received (40 characters"), "the access token reaches the site: {page}");
    assert_eq!(send(req(http::Method::GET, "/admin", Some(&cookie), None)).await.status, 200);
    // Bob is staff only.
    let bob = USERS[1];
    let form = format!("email={}&password={}", bob.email.replace('@', "%40"), bob.password);
    let bob_cookie = cookie_pair(&send(req(http::Method::POST, "/login", None, Some(form))).await);
    assert_eq!(send(req(http::Method::GET, "/admin", Some(&bob_cookie), None)).await.status, 403);
    let out = send(req(http::Method::GET, "/logout", Some(&cookie), None)).await;
    assert_eq!((out.status.as_u16(), out.header("location")), (303, "/"));
    assert!(out.header("set-cookie").contains("Max-Age=0"), "{}", out.header("set-cookie"));
    assert_eq!(send(req(http::Method::GET, "/workspace", Some(&cookie), None)).await.status, 303);
}
