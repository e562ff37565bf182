//! End to end: the qwyk login flow through the real server, against a
//! recording mock of the Qwyk API and a real upstream.

use ferrygate_testkit as common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

const TOKEN_OK: &str = r#"{"access_token":"tok-123/+=&x","token_type":"bearer","expires_in":3600}"#;

async fn setup(status: u16, body: &'static str) -> (Mock, Gateway) {
    setup_with(status, body, "", "").await
}

async fn setup_with(status: u16, body: &'static str, server_extra: &str, site_extra: &str) -> (Mock, Gateway) {
    let mock = Mock::start(status, body, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(mock.addr, upstream, server_extra, site_extra)).await;
    (mock, gw)
}

#[tokio::test]
async fn form_login_sends_the_exact_wire_format_and_redirects_to_the_portal() {
    let (mock, gw) = setup(200, TOKEN_OK).await;
    let res = post_form(&gw.url("/login"), &[("email", " alice@example.com "), ("password", "p&ss=w+rd %é")]).await;

    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("cache-control"), "no-store");
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/portals/auth/login");
    assert_eq!(req.headers["accept"], "application/json");
    assert_eq!(req.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"email": "alice@example.com", "password": "p&ss=w+rd %é", "organization_id": 12, "site_id": 34})
    );
    assert!(body["organization_id"].is_i64() && body["site_id"].is_i64(), "ids must be JSON integers");

    let location = res.location();
    assert_eq!(location.scheme(), "https");
    assert_eq!(location.host_str(), Some("portal.acme.example"));
    assert_eq!(location.path(), "/auth/external");
    assert_eq!(
        query(&location),
        vec![
            ("token".into(), "tok-123/+=&x".into()),
            ("token_type".into(), "bearer".into()),
            ("expires_in".into(), "3600".into()),
            ("destination".into(), "/my-portal".into()),
        ]
    );
}

#[tokio::test]
async fn json_login_answers_with_the_redirect_in_json() {
    let (_mock, gw) = setup(200, TOKEN_OK).await;
    let res =
        post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": "x", "remember": true}))
            .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("cache-control"), "no-store");
    let redirect = url::Url::parse(res.json()["redirect"].as_str().unwrap()).unwrap();
    assert_eq!(param(&redirect, "token").as_deref(), Some("tok-123/+=&x"));
}

#[tokio::test]
async fn missing_token_type_and_expires_in_take_the_defaults() {
    let (_mock, gw) = setup(200, r#"{"access_token":"abc"}"#).await;
    let res = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "x")]).await;
    let location = res.location();
    assert_eq!(param(&location, "token_type").as_deref(), Some("bearer"));
    assert_eq!(param(&location, "expires_in").as_deref(), Some("7200"));
}

#[tokio::test]
async fn destinations_keep_their_query_and_refused_ones_fall_back_to_the_default() {
    let (_mock, gw) = setup(200, TOKEN_OK).await;
    let wanted = "/my-portal/quotations/new?origin=NLRTM&product=fcl";
    let res =
        post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "x"), ("destination", wanted)]).await;
    assert_eq!(param(&res.location(), "destination").as_deref(), Some(wanted));

    let next = format!("/login?next={}", "%2Fmy-portal%2Fshipments");
    let res = post_form(&gw.url(&next), &[("email", "a@b.example"), ("password", "x")]).await;
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/my-portal/shipments"));
    // Both in the query: `destination` wins, here as for a returning user.
    let both = "/login?next=%2Fmy-portal%2Fa&destination=%2Fmy-portal%2Fb";
    let res = post_form(&gw.url(both), &[("email", "a@b.example"), ("password", "x")]).await;
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/my-portal/b"));

    for evil in ["https://evil.example/", "//evil.example", "/my-portalx", "/my-portal/../admin", "/\\evil"] {
        let res =
            post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "x"), ("destination", evil)]).await;
        assert_eq!(param(&res.location(), "destination").as_deref(), Some("/my-portal"), "{evil}");
    }
}

#[tokio::test]
async fn field_names_are_configurable() {
    let mock = Mock::start(200, TOKEN_OK, Duration::ZERO).await;
    let upstream = echo_upstream().await;
    let config = qwyk_config(mock.addr, upstream, "", "").replace(
        "path = \"/login\"\n",
        "path = \"/login\"\nusername_field = \"user\"\npassword_field = \"pw\"\ndestination_field = \"goto\"\n",
    );
    let gw = gateway(&config).await;
    let res =
        post_form(&gw.url("/login"), &[("user", "c@d.example"), ("pw", "secret"), ("goto", "/my-portal/x")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/my-portal/x"));
    let body: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(body["email"], "c@d.example");
    // The default names are not read any more.
    let res = post_form(&gw.url("/login"), &[("email", "c@d.example"), ("password", "secret")]).await;
    assert_eq!(res.location().path(), "/login");
    assert_eq!(param(&res.location(), "error").as_deref(), Some("missing_credentials"));
}

#[tokio::test]
async fn refused_credentials_go_back_to_the_form_or_answer_401_json() {
    let (_mock, gw) = setup(401, r#"{"message":"nope"}"#).await;
    let res = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "wrong")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let location = res.location();
    assert_eq!(location.path(), "/login");
    assert_eq!(query(&location), vec![("lang".into(), "en".into()), ("error".into(), "invalid_credentials".into())]);
    // Where the user was going is kept (validated) for the retry: from the form,
    // from the query, and for a refusal before the provider is asked.
    let res = post_form(
        &gw.url("/login"),
        &[("email", "a@b.example"), ("password", "wrong"), ("destination", "/my-portal/quotes?id=7")],
    )
    .await;
    assert_eq!(
        query(&res.location()),
        vec![
            ("lang".into(), "en".into()),
            ("destination".into(), "/my-portal/quotes?id=7".into()),
            ("error".into(), "invalid_credentials".into())
        ]
    );
    let res =
        post_form(&gw.url("/login?destination=/my-portal/x"), &[("email", "a@b.example"), ("password", "")]).await;
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/my-portal/x"));
    assert_eq!(param(&res.location(), "error").as_deref(), Some("missing_credentials"));
    // A destination that fails validation is kept as the default, never as given.
    let res = post_form(
        &gw.url("/login"),
        &[("email", "a@b.example"), ("password", "wrong"), ("destination", "https://evil.example/")],
    )
    .await;
    assert_eq!(param(&res.location(), "destination").as_deref(), Some("/my-portal"));

    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": "wrong"})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["error"], "invalid_credentials");
    assert!(res.json()["message"].is_string());
}

#[tokio::test]
async fn provider_failures_map_to_their_codes() {
    for (status, body, want_status, want_code) in [
        (500, "{}", 502, "provider_unavailable"),
        (200, "<html>", 502, "provider_unavailable"),
        (200, r#"{"token":"x"}"#, 502, "provider_unavailable"),
        (422, "{}", 401, "invalid_credentials"),
    ] {
        let (_mock, gw) = setup(status, body).await;
        let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": "x"})).await;
        assert_eq!(res.status.as_u16(), want_status, "{status} {body}");
        assert_eq!(res.json()["error"], want_code);
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_502_and_a_slow_one_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let upstream = echo_upstream().await;
    let gw = gateway(&qwyk_config(closed, upstream, "", "")).await;
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": "x"})).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(res.json()["error"], "provider_unavailable");

    let slow = Mock::start(200, TOKEN_OK, Duration::from_secs(3)).await;
    let gw = gateway(&qwyk_config(slow.addr, upstream, "", "")).await;
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": "x"})).await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.json()["error"], "provider_timeout");
    let res = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "x")]).await;
    assert_eq!(param(&res.location(), "error").as_deref(), Some("provider_timeout"));
}

#[tokio::test]
async fn missing_credentials_send_nothing_upstream() {
    let (mock, gw) = setup(200, TOKEN_OK).await;
    for form in [vec![("email", "a@b.example")], vec![("password", "x")], vec![("email", "  "), ("password", "x")]] {
        let res = post_form(&gw.url("/login"), &form).await;
        assert_eq!(param(&res.location(), "error").as_deref(), Some("missing_credentials"));
    }
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.json()["error"], "missing_credentials");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413_and_other_types_415() {
    let (mock, gw) = setup(200, TOKEN_OK).await;
    let big = "x".repeat(20 * 1024);
    let res = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", &big)]).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.text().trim(), "payload_too_large");

    let res = send(
        Request::post(gw.url("/login"))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from("hi")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let res = send(
        Request::post(gw.url("/login"))
            .header("content-type", "text/plain")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from("hi")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.json()["error"], "unsupported_media_type");
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": big})).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.json()["error"], "payload_too_large");
    assert!(mock.requests().is_empty());
}

async fn post_with(gw: &Gateway, headers: &[(&str, &str)]) -> Answer {
    post_to(gw, "/login", headers).await
}

async fn post_to(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::post(gw.url(path)).header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::from("email=a%40b.example&password=x"))).unwrap()).await
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let (mock, gw) = setup_with(200, TOKEN_OK, "", "allowed_origins = [\"https://shop.acme.example\"]").await;
    let host = gw.addr.to_string();
    let own = format!("http://{host}");
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("referer", "https://evil.example/login")],
        vec![("origin", own.as_str()), ("sec-fetch-site", "cross-site")],
        vec![("origin", "http://127.0.0.1:1")],
    ] {
        // The login form and the booking wizard alike.
        for path in ["/login", "/book"] {
            let res = post_to(&gw, path, &headers).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} {headers:?}");
            assert_eq!(res.text().trim(), "origin_rejected");
        }
    }
    assert!(mock.requests().is_empty());
    let own_referer = format!("{own}/login");
    for headers in [
        vec![],
        vec![("origin", own.as_str())],
        vec![("referer", own_referer.as_str())],
        vec![("origin", "https://shop.acme.example")],
        vec![("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
    ] {
        let res = post_with(&gw, &headers).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{headers:?}");
    }
}

#[tokio::test]
async fn https_can_be_required_and_vouched_for_by_a_trusted_proxy() {
    let (_m, gw) = setup_with(200, TOKEN_OK, "require_https = true\ntrusted_proxies = [\"127.0.0.1/32\"]", "").await;
    let res = post_with(&gw, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.text().trim(), "https_required");
    let res = post_with(&gw, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);

    let (_m, gw) = setup_with(200, TOKEN_OK, "require_https = true", "").await;
    let res = post_with(&gw, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "an untrusted peer cannot vouch for HTTPS");
}

#[tokio::test]
async fn the_wizard_lands_at_its_destination_with_the_routing_fields() {
    let (mock, gw) = setup(200, TOKEN_OK).await;
    let res = post_form(
        &gw.url("/book"),
        &[
            ("email", "a@b.example"),
            ("password", "x"),
            ("origin", "NLRTM"),
            ("destination_port", "US NYC&x=1"),
            ("product", "fcl"),
            ("unlisted", "dropped"),
            ("destination", "/my-portal/elsewhere"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(mock.requests().len(), 1);
    let destination = param(&res.location(), "destination").unwrap();
    let dest = url::Url::parse("https://portal.invalid").unwrap().join(&destination).unwrap();
    assert_eq!(dest.path(), "/my-portal/quotations/new");
    assert_eq!(
        query(&dest),
        vec![
            ("origin".into(), "NLRTM".into()),
            ("destination_port".into(), "US NYC&x=1".into()),
            ("product".into(), "fcl".into()),
        ]
    );
}

#[tokio::test]
async fn get_on_owned_login_routes_reaches_the_site_form() {
    let (mock, gw) = setup(200, TOKEN_OK).await;
    for path in ["/login", "/book"] {
        let res = get(&gw.url(path)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.json()["uri"], path);
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn home_and_logout_redirect_and_logout_expires_the_cookie() {
    let (_mock, gw) = setup(200, TOKEN_OK).await;
    let res = get(&gw.url("/portal-home")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location"), "https://www.acme.example/");

    for _ in 0..2 {
        let res = get(&gw.url("/portal-logout")).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert_eq!(res.header("location"), "https://www.acme.example/goodbye");
        let cookie = res.header("set-cookie");
        assert!(cookie.starts_with("ferrygate_session=;"), "{cookie}");
        assert!(cookie.contains("Max-Age=0") && cookie.contains("HttpOnly") && cookie.contains("Path=/"), "{cookie}");
    }
    let res = send(
        Request::post(gw.url("/portal-logout")).header("origin", "https://evil.example").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unacceptable_values_are_invalid_input_and_send_nothing() {
    let (mock, gw) = setup(200, TOKEN_OK).await;
    let long = "p".repeat(1025);
    let res = post_json(&gw.url("/login"), serde_json::json!({"email": "a@b.example", "password": long})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.json()["error"], "invalid_input");
    let res = post_form(&gw.url("/login"), &[("email", "a@b.example"), ("password", "nul\0byte")]).await;
    assert_eq!(param(&res.location(), "error").as_deref(), Some("invalid_input"));
    let res = send(
        Request::post(gw.url("/login"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from("{not json")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.json()["error"], "invalid_input");
    assert!(mock.requests().is_empty());
}
