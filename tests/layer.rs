//! The gateway as a Tower layer around an ordinary service (no proxy, no
//! server): `ServiceBuilder` + `service_fn`, with a provider kind of the
//! test's own (`kind = "mock"`), registered as a library user would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ferrygate::core::kind::{Build, SiteRules};
use ferrygate::core::Target;
use ferrygate::core::{BoxFuture, ClientConn, Grant, LoginAttempt, LoginError, Provider, SignedIn};
use ferrygate::{Config, GatewayLayer, IdentityLayer, ProviderKind};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

#[derive(Default)]
struct MockProvider {
    seen: Mutex<Vec<String>>,
    /// From the provider's table.
    portal: Mutex<String>,
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
        // A provider bug, for the panic test.
        let bug = a.password.expose_secret() == "panic";
        let to = format!("{}?d={}", self.portal.lock().unwrap(), a.destination);
        Box::pin(async move {
            assert!(!bug, "a provider bug");
            if ok {
                Ok(Grant::redirect(to))
            } else {
                Err(LoginError::InvalidCredentials)
            }
        })
    }
}

/// The test's own provider kind: its table has one key, `portal`, the
/// address its grants redirect to.
struct MockKind(Arc<MockProvider>);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MockTable {
    portal: String,
}

impl ProviderKind for MockKind {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn site_rules(&self) -> SiteRules {
        SiteRules { portal_url: true, default_destination: "/my-portal", ..SiteRules::default() }
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: MockTable = build.parse(table)?;
        build.http_url("portal", &t.portal)?;
        *self.0.portal.lock().unwrap() = t.portal;
        Some(self.0.clone())
    }
}

const CONFIG: &str = r#"
[sessions]
secret = "0123456789abcdef0123456789abcdef"
[providers.p]
kind = "mock"
portal = "https://portal.example/in"
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
    let kinds = ferrygate::kinds().with(MockKind(provider));
    let config = Config::from_toml(CONFIG, ".".as_ref(), &kinds).unwrap().config;
    GatewayLayer::new(Arc::new(config), Arc::new(ferrygate::core::MemoryStore::new(100)))
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
                let upstream = req
                    .extensions()
                    .get::<Target>()
                    .and_then(|r| r.site.upstream.origin.as_ref().map(ToString::to_string));
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
fn refuses_a_provider_of_a_kind_that_is_not_registered() {
    // The built-in kinds alone do not know "mock": refused, naming the key and the kinds known.
    let err = ferrygate::from_toml(CONFIG, ".".as_ref()).unwrap_err().to_string();
    assert!(err.contains("providers.p.kind: unknown provider kind \"mock\""), "{err}");
    assert!(err.contains("ldap, oidc, payway, qwyk, rest"), "{err}");
    // A registered kind's own table is checked by the kind, keys named in full.
    let kinds = ferrygate::kinds().with(MockKind(Arc::default()));
    let bad = CONFIG.replace("portal = \"https://portal.example/in\"", "portal = \"ftp://x\"\ncolour = 1");
    let err = Config::from_toml(&bad, ".".as_ref(), &kinds).unwrap_err().to_string();
    assert!(err.contains("error: providers.p.colour:"), "{err}");
    let bad = CONFIG.replace("portal = \"https://portal.example/in\"", "portal = \"ftp://x\"");
    let err = Config::from_toml(&bad, ".".as_ref(), &kinds).unwrap_err().to_string();
    assert!(err.contains("error: providers.p.portal:"), "{err}");
}

#[tokio::test]
async fn a_user_signed_in_through_a_kind_of_ones_own_is_the_inner_services_signed_in() {
    let provider = Arc::new(MockProvider::default());
    let svc = ServiceBuilder::new().layer(layer(provider)).layer(IdentityLayer).service(tower::service_fn(
        |req: Request<String>| async move {
            let user = req.extensions().get::<SignedIn>().map(|s| s.user.clone()).unwrap_or_default();
            Ok::<_, Infallible>(Response::new(user))
        },
    ));
    let login = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(String::from("email=al%40x.example&password=right"))
        .unwrap();
    let res = svc.clone().oneshot(login).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = Request::get("/anything").header("cookie", cookie).body(String::new()).unwrap();
    let res = svc.oneshot(page).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "al@x.example");
}

/// A configuration for a Tower layer needs no `upstream` (the service is the
/// site); the server, `check` and `serve` refuse it, naming the key.
#[tokio::test]
async fn a_layer_needs_no_upstream_and_the_server_refuses_a_site_without_one() {
    let text = CONFIG.replace("upstream = \"http://127.0.0.1:9\"\n", "");
    assert!(!text.contains("upstream"));
    let kinds = ferrygate::kinds().with(MockKind(Arc::default()));
    let config = Arc::new(Config::from_toml(&text, ".".as_ref(), &kinds).unwrap().config);
    let refused = config.servable().unwrap_err().to_string();
    assert!(refused.contains("sites[0] (app).upstream: required to serve"), "{refused}");
    let layer = GatewayLayer::new(config.clone(), Arc::new(ferrygate::core::MemoryStore::new(100)));
    let svc = ServiceBuilder::new().layer(layer.clone()).layer(IdentityLayer).service(tower::service_fn(
        |_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("the service"))) },
    ));
    let res = svc.oneshot(Request::get("/anything").body(String::new()).unwrap()).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "the service");
    let Err(e) = ferrygate_server::Server::bind(layer).await else { panic!("served a site without an upstream") };
    assert!(e.to_string().contains("sites[0] (app).upstream"), "{e}");
    // The CLI says the same.
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace(
        "kind = \"mock\"\nportal = \"https://portal.example/in\"",
        "kind = \"qwyk\"\nserver = \"https://qwyk.example\"\norganization_id = 1\nsite_id = 2",
    );
    std::fs::write(dir.path().join("ferrygate.toml"), &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrygate"))
        .args(["check", "--config"])
        .arg(dir.path().join("ferrygate.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: sites[0] (app).upstream: required to serve"), "{stderr}");
}

/// SPEC 7: no panic in one request stops another. The test's provider
/// panics on one password; through the real server, that login is a 500 on
/// its connection and every other request, before and after, is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_is_its_own_500_and_nothing_else_stops() {
    let kinds = ferrygate::kinds().with(MockKind(Arc::default()));
    let text = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{CONFIG}")
        .replace("[sessions]\n", "[sessions]\ncookie_secure = false\n");
    let config = Config::from_toml(&text, ".".as_ref(), &kinds).unwrap().config;
    let gateway = ferrygate::Gateway::from_config(config).await.unwrap();
    let server = ferrygate_server::Server::bind(gateway.gateway_layer().clone()).await.unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    // One client, so the keep-alive connection is reused across the panic.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let login = |password: &str| {
        http::Request::post(format!("http://{addr}/login"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                r#"{{"email":"a@x.example","password":"{password}"}}"#
            ))))
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
