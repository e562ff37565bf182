//! The gateway as a Tower layer around an ordinary service (no proxy, no
//! server): `ServiceBuilder` + `service_fn`, with a mock provider.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ferrygate::core::config::Upstream;
use ferrygate::core::{BoxFuture, ClientConn, Grant, LoginAttempt, LoginError, Provider, Providers};
use ferrygate::{Config, GatewayLayer, IdentityLayer};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

#[derive(Default)]
struct MockProvider {
    seen: Mutex<Vec<String>>,
}

impl Provider for MockProvider {
    fn authenticate<'a>(&'a self, a: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        use ferrygate::core::ExposeSecret;
        let line = format!(
            "{}|{}|{}|{}|{:?}|{}",
            a.username,
            a.password.expose_secret(),
            a.remember,
            a.destination,
            a.client_ip,
            a.user_agent
        );
        self.seen.lock().unwrap().push(line);
        let ok = a.password.expose_secret() == "right";
        let destination = a.destination.to_owned();
        Box::pin(async move {
            if ok {
                Ok(Grant::redirect(format!("https://portal.example/in?d={destination}")))
            } else {
                Err(LoginError::InvalidCredentials)
            }
        })
    }
}

const CONFIG: &str = r#"
[sessions]
secret = "0123456789abcdef0123456789abcdef"
[providers.p]
kind = "qwyk"
server = "http://127.0.0.1:9"
organization_id = 1
site_id = 2
[[sites]]
name = "app"
upstream = "http://127.0.0.1:9"
provider = "p"
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/in"
allowed_destinations = ["/my-portal"]
[sites.home]
paths = ["/home"]
redirect = "/"
"#;

fn layer(provider: Arc<MockProvider>) -> GatewayLayer {
    let config = Config::from_toml(CONFIG, ".".as_ref()).unwrap().config;
    let mut providers = Providers::new();
    providers.insert("p".to_owned(), provider as Arc<dyn Provider>);
    GatewayLayer::new(Arc::new(config), providers, Arc::new(ferrygate::core::MemoryStore::new(100))).unwrap()
}

#[tokio::test]
async fn passes_other_requests_through_untouched_but_for_identity_headers() {
    let provider = Arc::new(MockProvider::default());
    let inner_saw = Arc::new(Mutex::new(None));
    let record = inner_saw.clone();
    let svc = ServiceBuilder::new().layer(layer(provider.clone())).layer(IdentityLayer).service(tower::service_fn(
        move |req: Request<String>| {
            let record = record.clone();
            async move {
                let upstream = req.extensions().get::<Arc<Upstream>>().map(|u| u.origin.to_string());
                let names: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
                *record.lock().unwrap() =
                    Some((req.method().clone(), req.uri().to_string(), names, req.into_body(), upstream));
                Ok::<_, Infallible>(Response::builder().status(207).body(String::from("inner")).unwrap())
            }
        },
    ));
    let req = Request::post("/api/orders?x=1")
        .header("x-trace", "1")
        .header("X-Ferrygate-User", "mallory")
        .header("x_ferrygate_org_id", "1")
        .body(String::from("payload"))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status().as_u16(), 207);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "inner");
    let (method, uri, names, body, upstream) = inner_saw.lock().unwrap().take().unwrap();
    assert_eq!(method, http::Method::POST);
    assert_eq!(uri, "/api/orders?x=1");
    assert_eq!(names, vec!["x-trace"]);
    assert_eq!(body, "payload");
    assert_eq!(upstream.as_deref(), Some("http://127.0.0.1:9/"));
    assert!(provider.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn answers_logins_itself_without_calling_the_inner_service() {
    let provider = Arc::new(MockProvider::default());
    let svc = ServiceBuilder::new().layer(layer(provider.clone())).service(tower::service_fn(
        |_req: Request<String>| async {
            panic!("the inner service must not see a login");
            #[allow(unreachable_code)]
            Ok::<Response<String>, Infallible>(Response::new(String::new()))
        },
    ));
    let peer: SocketAddr = "198.51.100.4:5000".parse().unwrap();
    let mut req = Request::post("/login?next=/my-portal/q%3Fa%3D1")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "TestAgent/1")
        .body(String::from("email=al%40x.example&password=right&remember=on"))
        .unwrap();
    req.extensions_mut().insert(ClientConn { peer, tls: false });
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "https://portal.example/in?d=/my-portal/q?a=1");
    assert_eq!(
        provider.seen.lock().unwrap().as_slice(),
        ["al@x.example|right|true|/my-portal/q?a=1|Some(198.51.100.4)|TestAgent/1"]
    );

    let req = Request::post("/login")
        .header("content-type", "application/json")
        .body(String::from(r#"{"email":"al@x.example","password":"wrong"}"#))
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "invalid_credentials");

    let res = svc.oneshot(Request::get("/home").body(String::new()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/");
}

#[test]
fn refuses_a_config_whose_provider_is_missing() {
    let config = Config::from_toml(CONFIG, ".".as_ref()).unwrap().config;
    let err = GatewayLayer::new(Arc::new(config), Providers::new(), Arc::new(ferrygate::core::MemoryStore::new(1)))
        .unwrap_err();
    assert!(err.contains("\"p\""), "{err}");
}
