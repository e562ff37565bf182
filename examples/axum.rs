//! Ferrygate inside an axum application: the same login routes, sessions and
//! identity as the proxy, as layers around a `Router`.
//!
//! ```sh
//! FERRYGATE_CONFIG=deploy/examples/qwyk.toml FERRYGATE_SESSION_SECRET=$(openssl rand -base64 48) \
//!   cargo run --example axum
//! ```
//!
//! `/account` is in `protected_paths`: without a session it redirects to the
//! login form; with one, the handler reads who is signed in from the
//! `SignedIn` request extension (the proxy would send `X-Ferrygate-User`).

use axum::routing::get;
use axum::{Extension, Router};
use ferrygate::core::SignedIn;

/// The application: its own routes, wrapped in Ferrygate's layers.
pub async fn app(config_toml: &str) -> Result<Router, ferrygate::core::BoxError> {
    let loaded = ferrygate::from_toml(config_toml, ".".as_ref())?;
    let gateway = ferrygate::Gateway::from_config(loaded.config).await?;
    Ok(Router::new()
        .route("/", get(|| async { "Welcome. Sign in at /login." }))
        .route("/login", get(|| async { "<form method=post action=/login>…</form>" }))
        .route("/account", get(account))
        .layer(gateway.layer()))
}

async fn account(user: Option<Extension<SignedIn>>) -> String {
    match user {
        Some(Extension(user)) => format!("Hello, {} (via {})", user.user, user.provider),
        None => "nobody".to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("FERRYGATE_CONFIG").unwrap_or_else(|_| "ferrygate.toml".to_owned());
    let loaded = ferrygate::load(path.as_ref())?;
    let gateway = ferrygate::Gateway::from_config(loaded.config).await?;
    let app = Router::new().route("/account", get(account)).layer(gateway.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(router: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    }

    #[tokio::test]
    async fn the_layer_guards_and_identifies_inside_axum() {
        // A Qwyk-style provider, itself a small axum app.
        let provider = serve(Router::new().route(
            "/api/portals/auth/login",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({"access_token": "tok", "token_type": "bearer", "expires_in": 600}))
            }),
        ))
        .await;
        let config = format!(
            r#"
[sessions]
secret = "0123456789abcdef0123456789abcdef"
cookie_secure = false
[providers.p]
kind = "qwyk"
server = "http://{provider}"
organization_id = 1
site_id = 2
[[sites]]
name = "app"
upstream = "http://127.0.0.1:9"
provider = "p"
protected_paths = ["/account"]
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/in"
"#
        );
        let addr = serve(app(&config).await.unwrap()).await;
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let call = |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
            let client = client.clone();
            async move {
                use http_body_util::BodyExt;
                let res = client.request(req).await.unwrap();
                let (parts, body) = res.into_parts();
                (parts, String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap())
            }
        };
        let get = |path: &str, cookie: Option<&str>| {
            let mut req = http::Request::get(format!("http://{addr}{path}"));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.body(http_body_util::Full::default()).unwrap()
        };

        // The app's own routes are untouched.
        assert_eq!(call(get("/", None)).await.1, "Welcome. Sign in at /login.");
        // The protected route needs a session.
        let (parts, _) = call(get("/account", None)).await;
        assert_eq!(parts.status, 303);
        assert_eq!(parts.headers["location"], "/login?destination=%2Faccount");
        // The login POST is answered by the layer.
        let login = http::Request::post(format!("http://{addr}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from("email=ann%40x.example&password=pw")))
            .unwrap();
        let (parts, _) = call(login).await;
        assert_eq!(parts.status, 303);
        assert!(parts.headers["location"].to_str().unwrap().starts_with("https://portal.example/in?token=tok"));
        let cookie = parts.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        // With the session, the handler sees the identity as an extension.
        let (parts, body) = call(get("/account", Some(&cookie))).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, "Hello, ann@x.example (via p)");
    }
}
