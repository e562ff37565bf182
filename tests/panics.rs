//! SPEC 7: no panic in one request stops another. A provider kind of the
//! test's own panics on one password; through the real server, that login is
//! a 500 on its connection and every other request, before and after, is
//! answered as usual.

use std::sync::Arc;

use ferrygate::core::kind::{Build, SiteRules};
use ferrygate::core::{BoxFuture, ExposeSecret, Grant, LoginAttempt, LoginError, Provider};
use ferrygate::{Config, ProviderKind};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Panicky;

impl Provider for Panicky {
    fn authenticate<'a>(&'a self, a: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        Box::pin(async move {
            match a.password.expose_secret() {
                "panic" => panic!("a provider bug"),
                "right" => Ok(Grant::redirect("https://portal.example/in".to_owned())),
                _ => Err(LoginError::InvalidCredentials),
            }
        })
    }
}

struct PanickyKind;

impl ProviderKind for PanickyKind {
    fn name(&self) -> &'static str {
        "panicky"
    }

    fn site_rules(&self) -> SiteRules {
        SiteRules { portal_url: true, default_destination: "/my-portal", ..SiteRules::default() }
    }

    fn build(&self, _: toml::Table, _: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        Some(Arc::new(Panicky))
    }
}

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[sessions]
secret = "0123456789abcdef0123456789abcdef"
cookie_secure = false
[providers.p]
kind = "panicky"
[[sites]]
name = "app"
upstream = "http://127.0.0.1:9"
provider = "p"
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/in"
allowed_destinations = ["/my-portal"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_is_its_own_500_and_nothing_else_stops() {
    let kinds = ferrygate::kinds().with(PanickyKind);
    let config = Config::from_toml(CONFIG, ".".as_ref(), &kinds).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate::server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    // One client, so the keep-alive connection is reused across the panic.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let login = |password: &str| {
        http::Request::post(format!("http://{addr}/login"))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(format!(r#"{{"email":"a@x.example","password":"{password}"}}"#))))
            .unwrap()
    };
    for round in 0..3 {
        let res = client.request(login("panic")).await.unwrap_or_else(|e| panic!("round {round}: dropped: {e}"));
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "internal_error\n");
        let res = client.request(login("right")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "round {round}: the gateway stopped answering logins");
        let res = client.request(login("wrong")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}
