//! Ferrygate inside an axum app: the app keeps its own login page, Ferrygate
//! answers the login POST, guards `/account`, and hands each handler the
//! signed-in user.
//!
//! ```sh
//! cargo run --example axum          # then open http://127.0.0.1:3000/account
//! ```
//!
//! With no environment at all it starts the demo's Qwyk-style provider
//! in-process and loads `examples/axum.toml` (sign in as `alice@example.com`
//! / `ferrygate-demo`); `FERRYGATE_CONFIG=path` loads your own file instead.
//! `main` and the test below serve the same [`app`].

#[path = "common/mod.rs"]
mod common;

use axum::extract::Query;
use axum::response::{Html, Redirect};
use axum::routing::get;
use axum::Router;
use ferrygate::core::SignedIn;

/// The application's routes inside Ferrygate's layers, as a whole
/// ([`ferrygate::Gateway::around`]; not `Router::layer`, which would let
/// axum's method routers add `Allow` to Ferrygate's answers).
pub(crate) fn app(gateway: &ferrygate::Gateway) -> Router {
    gateway.around(
        Router::new()
            .route("/", get(home))
            .route("/login", get(login_form))
            .route("/welcome", get(welcome))
            .route("/account", get(account))
            .route("/api/me", get(me)),
    )
}

/// Anyone may see it; a signed-in user is greeted by name.
async fn home(user: Option<SignedIn>) -> String {
    match user {
        Some(user) => format!("Welcome back, {}. Your account: /account", user.user),
        None => "Welcome. Your account: /account (you will be asked to sign in)".to_owned(),
    }
}

#[derive(serde::Deserialize)]
struct Next {
    destination: Option<String>,
}

/// The app's own login form. Ferrygate answers its POST.
async fn login_form(Query(next): Query<Next>) -> Html<String> {
    let destination = next.destination.unwrap_or_default().replace(['"', '<', '>', '&'], "");
    Html(format!(
        r#"<!doctype html><title>Sign in</title>
<form method="post" action="/login">
  <input name="email" placeholder="email"> <input name="password" type="password" placeholder="password">
  <input type="hidden" name="destination" value="{destination}">
  <button>Sign in</button>
</form>"#
    ))
}

/// Where a Qwyk login lands (`portal.url` in examples/axum.toml): the app
/// plays the portal here and sends the user on to the destination, which
/// Ferrygate has already checked against `allowed_destinations`.
async fn welcome(Query(next): Query<Next>) -> Redirect {
    Redirect::to(next.destination.as_deref().filter(|d| d.starts_with('/')).unwrap_or("/account"))
}

/// Protected (`protected_paths`): only signed-in users get here.
async fn account(user: SignedIn) -> String {
    format!("Hello, {}", user.user)
}

/// Not protected, but the extractor answers 401 (JSON) without a session.
async fn me(user: SignedIn) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"user": user.user, "provider": user.provider}))
}

#[tokio::main]
async fn main() -> Result<(), ferrygate::core::BoxError> {
    let (listener, gateway) = common::listen().await?;
    println!("listening on http://{}/account — sign in as {} / {}", common::LISTEN, common::EMAIL, common::PASSWORD);
    axum::serve(listener, app(&gateway)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main` runs, on a free port, with the demo provider started in-process.
    async fn start() -> std::net::SocketAddr {
        let provider = ferrygate::demo::Demo::start_provider().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = common::with_demo_provider(provider, addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app(&gateway)).await.unwrap() });
        addr
    }

    async fn call(req: http::Request<String>) -> (http::response::Parts, String) {
        use http_body_util::BodyExt;
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let req = req.map(|b| http_body_util::Full::new(bytes::Bytes::from(b)));
        let res = client.request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        (parts, String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    fn get(addr: std::net::SocketAddr, path: &str, cookie: Option<&str>) -> http::Request<String> {
        let mut req = http::Request::get(format!("http://{addr}{path}"));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.body(String::new()).unwrap()
    }

    #[tokio::test]
    async fn a_visitor_signs_in_through_the_app_s_own_form_and_sees_their_account() {
        let addr = start().await;
        // The protected page sends to the app's own login form.
        let (parts, _) = call(get(addr, "/account", None)).await;
        assert_eq!(parts.status, 303);
        let to_login = parts.headers["location"].to_str().unwrap().to_owned();
        assert_eq!(to_login, "/login?destination=%2Faccount");
        let (parts, form) = call(get(addr, &to_login, None)).await;
        assert_eq!(parts.status, 200);
        assert!(form.contains(r#"value="/account""#), "{form}");
        // The form's POST: answered by Ferrygate against the demo provider.
        let body = format!("email=alice%40example.com&password={}&destination=%2Faccount", common::PASSWORD);
        let login = http::Request::post(format!("http://{addr}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .unwrap();
        let (parts, _) = call(login).await;
        assert_eq!(parts.status, 303);
        // Ferrygate's answer is Ferrygate's: axum's method router adds no `Allow` to it.
        assert!(parts.headers.get("allow").is_none(), "{:?}", parts.headers);
        let welcome = parts.headers["location"].to_str().unwrap().to_owned();
        let welcome = welcome.strip_prefix(&format!("http://{addr}")).unwrap_or_else(|| panic!("{welcome}")).to_owned();
        assert!(welcome.starts_with("/welcome?token="), "{welcome}");
        let cookie = parts.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        // The "portal" page sends on to the destination …
        let (parts, _) = call(get(addr, &welcome, Some(&cookie))).await;
        assert_eq!(parts.headers["location"], "/account");
        // … where the handler's `user: SignedIn` is Alice.
        let (parts, body) = call(get(addr, "/account", Some(&cookie))).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, "Hello, alice@example.com");
        let (_, body) = call(get(addr, "/", Some(&cookie))).await;
        assert!(body.starts_with("Welcome back, alice@example.com"), "{body}");
        // A wrong password goes back to the form with the error.
        let login = http::Request::post(format!("http://{addr}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("email=alice%40example.com&password=wrong".to_owned())
            .unwrap();
        let (parts, _) = call(login).await;
        assert_eq!(parts.headers["location"], "/login?error=invalid_credentials");
        assert!(parts.headers.get("allow").is_none(), "{:?}", parts.headers);
        // Logout (no route of the app's at all) is Ferrygate's too.
        let (parts, _) = call(get(addr, "/logout", Some(&cookie))).await;
        assert_eq!(parts.status, 303);
        assert!(parts.headers.get("allow").is_none(), "{:?}", parts.headers);
    }

    #[tokio::test]
    async fn the_extractor_answers_401_json_and_option_is_none_without_a_session() {
        let addr = start().await;
        let (parts, body) = call(get(addr, "/api/me", None)).await;
        assert_eq!(parts.status, 401);
        assert_eq!(parts.headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "unauthenticated");
        let (parts, body) = call(get(addr, "/", None)).await;
        assert_eq!(parts.status, 200);
        assert!(body.starts_with("Welcome. "), "{body}");
    }
}
