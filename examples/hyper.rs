//! Ferrygate's layers around a plain `tower::service_fn`, served by hyper-util:
//! for services that are not on axum.
//!
//! ```sh
//! cargo run --example hyper         # then open http://127.0.0.1:3000/account
//! ```
//!
//! The same configuration and provider as `examples/axum.rs` (see there).
//! `main` and the test below run the same [`serve`].

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;

use bytes::Bytes;
use ferrygate::core::SignedIn;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tower::{ServiceBuilder, ServiceExt};

/// The application: one function of the request. Ferrygate's layers go
/// around it in [`serve`]; a signed-in user is the `SignedIn` extension.
pub(crate) async fn app(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let user = req.extensions().get::<SignedIn>().map(|u| u.user.clone());
    let (status, body) = match (req.uri().path(), user) {
        ("/account", Some(user)) => (StatusCode::OK, format!("Hello, {user}")),
        ("/login", _) => (StatusCode::OK, login_form()),
        ("/welcome", _) => return Ok(redirect("/account")),
        (_, Some(user)) => (StatusCode::OK, format!("Welcome back, {user}")),
        (_, None) => (StatusCode::OK, "Welcome. Your account: /account".to_owned()),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    Ok(res)
}

fn login_form() -> String {
    r#"<form method="post" action="/login"><input name="email"><input name="password" type="password"><button>Sign in</button></form>"#
        .to_owned()
}

fn redirect(to: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::default());
    *res.status_mut() = StatusCode::SEE_OTHER;
    res.headers_mut().insert(http::header::LOCATION, http::HeaderValue::from_static(to));
    res
}

/// Serves [`app`] behind `gateway`'s layers on `listener`, one task per connection.
pub(crate) async fn serve(listener: tokio::net::TcpListener, gateway: ferrygate::Gateway) {
    let svc = ServiceBuilder::new().layer(gateway.layer()).service_fn(app);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let svc = svc.clone();
        tokio::spawn(async move {
            let hyper_svc = hyper::service::service_fn(move |req| svc.clone().oneshot(req));
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), hyper_svc).await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), ferrygate::core::BoxError> {
    let (listener, gateway) = common::listen().await?;
    println!("listening on http://{}/account — sign in as {} / {}", common::LISTEN, common::EMAIL, common::PASSWORD);
    serve(listener, gateway).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_layer_around_a_service_fn_guards_signs_in_and_identifies() {
        let provider = ferrygate::demo::Demo::start_provider().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = common::with_demo_provider(provider, addr).await.unwrap();
        tokio::spawn(serve(listener, gateway));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let call = |req: Request<Full<Bytes>>| {
            let client = client.clone();
            async move {
                let res = client.request(req).await.unwrap();
                let (parts, body) = res.into_parts();
                (parts, String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap())
            }
        };
        let get = |path: &str, cookie: &str| {
            Request::get(format!("http://{addr}{path}")).header("cookie", cookie).body(Full::default()).unwrap()
        };
        let (parts, _) = call(get("/account", "")).await;
        assert_eq!(parts.status, 303);
        assert_eq!(parts.headers["location"], "/login?destination=%2Faccount");
        let login = Request::post(format!("http://{addr}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!("email=alice%40example.com&password={}", common::PASSWORD))))
            .unwrap();
        let (parts, _) = call(login).await;
        assert_eq!(parts.status, 303);
        let cookie = parts.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let (parts, body) = call(get("/account", &cookie)).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, "Hello, alice@example.com");
    }
}
