//! Per-operation costs of the request path (criterion). Figures are medians on
//! a noisy 2-core machine: compare them with each other, not with a target.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrygate::core::session::{now_ms, Session, SessionStore, StoreKey};
use ferrygate::core::{destination, MemoryStore};
use ferrygate::{Config, GatewayLayer};
use http::{Request, Response};
use tower::{Layer, Service};

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
hosts = ["www.acme.example"]
upstream = "http://127.0.0.1:9"
provider = "p"
[sites.login]
path = "/login"
[sites.portal]
url = "https://portal.example/in"
allowed_destinations = ["/my-portal"]
[sites.home]
paths = ["/portal-home"]
redirect = "/"
[sites.logout]
paths = ["/portal-logout"]
redirect = "/"
"#;

fn session() -> Session {
    Session {
        site: "acme".into(),
        provider: "p".into(),
        user: "alice@example.com".into(),
        user_id: Some("1234".into()),
        org_id: Some("77".into()),
        external_id: None,
        groups: Vec::new(),
        token: Some("eyJhbGciOiJIUzI1NiJ9.payload-of-a-typical-length.signature".into()),
        token_type: "bearer".into(),
        refresh_token: None,
        token_expires_at_ms: None,
        expires_at_ms: now_ms() + 7_200_000,
    }
}

fn routing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ferrygate::from_toml(CONFIG, ".".as_ref()).unwrap().config;
    let layer = GatewayLayer::new(Arc::new(config), Arc::new(MemoryStore::new(10)));
    let inner = tower::service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut svc = layer.layer(inner);
    c.bench_function("gateway: pass-through decision (not intercepted)", |b| {
        b.iter(|| {
            let req =
                Request::get("/products/42?ref=home").header("host", "www.acme.example").body(String::new()).unwrap();
            let fut = svc.call(black_box(req));
            black_box(rt.block_on(fut).unwrap());
        })
    });
    c.bench_function("gateway: home redirect (owned route)", |b| {
        b.iter(|| {
            let req = Request::get("/portal-home").header("host", "www.acme.example").body(String::new()).unwrap();
            black_box(rt.block_on(svc.call(req)).unwrap());
        })
    });
}

fn destinations(c: &mut Criterion) {
    let allowed = vec!["/my-portal".to_owned()];
    c.bench_function("destination: validate a legitimate one", |b| {
        b.iter(|| destination::validate(black_box("/my-portal/quotations/new?origin=NLRTM&product=fcl"), &allowed))
    });
    c.bench_function("destination: refuse an attack", |b| {
        b.iter(|| destination::validate(black_box("/my-portal/%2e%2e/%2f%2fevil.example"), &allowed))
    });
}

fn sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryStore::new(1_000_000);
    let s = session();
    let keys: Vec<StoreKey> = (0..10_000u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            StoreKey(k)
        })
        .collect();
    rt.block_on(async {
        for k in &keys {
            store.insert(k, &s, Duration::from_secs(7200)).await.unwrap();
        }
    });
    let mut i = 0usize;
    c.bench_function("memory store: lookup hit", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(rt.block_on(store.get(&keys[i])).unwrap())
        })
    });
    let missing = StoreKey([0xff; 32]);
    c.bench_function("memory store: lookup miss", |b| b.iter(|| black_box(rt.block_on(store.get(&missing)).unwrap())));
    let mut n = 10_000u32;
    c.bench_function("memory store: insert", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut k = [1u8; 32];
            k[..4].copy_from_slice(&n.to_le_bytes());
            rt.block_on(store.insert(&StoreKey(k), &s, Duration::from_secs(7200))).unwrap()
        })
    });
}

fn redirects_and_templates(c: &mut Criterion) {
    use ferrygate::rest::render::{self, Values};
    use ferrygate::rest::template::Template;
    let config = ferrygate::from_toml(CONFIG, ".".as_ref()).unwrap().config;
    let site = config.sites[0].clone();
    c.bench_function("qwyk: portal redirect building", |b| {
        b.iter(|| {
            ferrygate::qwyk::portal_redirect(
                &site,
                black_box("eyJhbGciOiJIUzI1NiJ9.payload-of-a-typical-length.signature"),
                "bearer",
                Duration::from_secs(7200),
                "/my-portal/quotations/new?origin=NLRTM&product=fcl",
            )
        })
    });
    let body: Vec<(String, Template)> =
        [("login", "{{USEREMAIL}}"), ("password", "{{USERPASSWORD}}"), ("org", "{{ORGID}}")]
            .iter()
            .map(|(k, t)| (k.to_string(), Template::parse(t).unwrap()))
            .collect();
    let url = Template::parse("https://auth.corp.example/check?user={{USEREMAIL}}&os={{DEVICEOS}}").unwrap();
    let values = Values {
        email: "alice@corp.example",
        password: "p\"a&s<s>",
        org_id: "77",
        device_os: "Windows",
        ..Values::default()
    };
    c.bench_function("rest: template rendering (url + json body)", |b| {
        b.iter(|| (render::url(&url, black_box(&values)), render::json(&body, black_box(&values))))
    });
    c.bench_function("rest: template rendering (xml body)", |b| {
        b.iter(|| render::xml("login", &body, black_box(&values)))
    });
}

/// A provider that accepts everyone at once: the login path without the network.
struct Instant;

impl ferrygate::core::Provider for Instant {
    fn authenticate<'a>(
        &'a self,
        attempt: &'a ferrygate::core::LoginAttempt<'a>,
    ) -> ferrygate::core::BoxFuture<'a, Result<ferrygate::core::Grant, ferrygate::core::LoginError>> {
        Box::pin(std::future::ready(Ok(ferrygate::core::Grant::redirect(attempt.destination))))
    }
}

struct InstantKind;

impl ferrygate::ProviderKind for InstantKind {
    fn name(&self) -> &'static str {
        "qwyk"
    }

    fn site_rules(&self) -> ferrygate::core::SiteRules {
        ferrygate::qwyk::QwykKind.site_rules()
    }

    fn build(
        &self,
        _table: ferrygate::core::toml::Table,
        _build: &mut ferrygate::core::Build<'_, '_>,
    ) -> Option<Arc<dyn ferrygate::core::Provider>> {
        Some(Arc::new(Instant))
    }
}

fn login_post(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The qwyk table, built into an instant provider instead.
    let kinds = ferrygate::kinds().with(InstantKind);
    let config = Config::from_toml(
        &CONFIG.replace("[sessions]", "[limits]\nlogin_per_ip = \"100000000/sec\"\n[sessions]"),
        ".".as_ref(),
        &kinds,
    )
    .unwrap()
    .config;
    let layer = GatewayLayer::new(Arc::new(config), Arc::new(MemoryStore::new(1_000_000)));
    let inner = tower::service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut svc = layer.layer(inner);
    c.bench_function("login POST: body parsing, checks, session (instant provider)", |b| {
        b.iter(|| {
            let req = Request::post("/login")
                .header("host", "www.acme.example")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(String::from("email=alice%40example.com&password=ferrygate-demo&destination=%2Fmy-portal%2Fx"))
                .unwrap();
            black_box(rt.block_on(svc.call(req)).unwrap())
        })
    });
}

/// The forward-auth check with a live session: the decision a proxy in front
/// asks for every request (cookie, one store lookup, the rule, the identity headers).
fn forward_auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kinds = ferrygate::kinds().with(InstantKind);
    let text = CONFIG.replace(
        "[sessions]",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[limits]\nlogin_per_ip = \"100000000/sec\"\n[sessions]",
    ) + "\n[sites.forward_auth]\npath = \"/_ferrygate/auth\"\n";
    let config = Config::from_toml(&text, ".".as_ref(), &kinds).unwrap().config;
    let layer = GatewayLayer::new(Arc::new(config), Arc::new(MemoryStore::new(1000)));
    let inner = tower::service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut svc = layer.layer(inner);
    let login = Request::post("/login")
        .header("host", "www.acme.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(String::from("email=alice%40example.com&password=ferrygate-demo"))
        .unwrap();
    let res = rt.block_on(svc.call(login)).unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let peer = ferrygate::core::ClientConn { peer: "127.0.0.1:40000".parse().unwrap(), tls: false };
    c.bench_function("forward-auth: check with a live session (memory store)", |b| {
        b.iter(|| {
            let mut req = Request::get("/_ferrygate/auth")
                .header("host", "www.acme.example")
                .header("cookie", &cookie)
                .header("x-original-uri", "/account?tab=2")
                .body(String::new())
                .unwrap();
            req.extensions_mut().insert(peer);
            let res = rt.block_on(svc.call(req)).unwrap();
            assert_eq!(res.status(), 200);
            black_box(res)
        })
    });
}

criterion_group!(benches, routing, destinations, sessions, redirects_and_templates, login_post, forward_auth);
criterion_main!(benches);
