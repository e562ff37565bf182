//! `ferrygate demo`: everything a newcomer needs to see the product work, in
//! one process, over loopback HTTP so the real adapters are exercised:
//!
//! - a company site ("Northwind Freight") with a landing page, its own login
//!   form and a booking-wizard form — the upstream Ferrygate fronts;
//! - a Qwyk-style provider API (`POST /api/portals/auth/login`);
//! - a portal that accepts the token and shows who is signed in;
//! - a newspaper ("The Daily Courant") whose subscribers sign in with a
//!   Payway-style provider: service token, login handle, and an authorization
//!   page that sends the browser back to the site's landing page with `state`.
//!
//! - a staff intranet whose workspace is protected by a rest-style identity
//!   service, with a user directory and a forgot-password endpoint;
//! - a staff portal whose users sign in through the `oidc` kind against an
//!   OpenID issuer embedded here ([`sso`]).
//!
//! The newspaper is the site for `localhost`, the intranet for
//! `intranet.localhost`, the staff portal for `sso.localhost` (browsers
//! resolve `*.localhost` to loopback), the freight forwarder the default site
//! (e.g. `127.0.0.1`).
//!
//! [`Demo::config_toml`] writes the Ferrygate configuration that ties them
//! together; it goes through the same parser and validation as any file.
//!
//! This file is long for a reason: each mock service is a short handler
//! next to the others, so the whole demo's behaviour reads top to bottom in
//! one place (the pages' HTML is in `pages.rs`).

pub mod front;
mod http;
mod pages;
pub mod sso;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ::http::{Method, StatusCode};
use bytes::Bytes;
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;

use crate::http::{form, header, html, json, query, serve, text, Handler, Parts, Reply};

/// A demo account.
#[derive(Debug, Clone, Copy)]
pub struct DemoUser {
    pub email: &'static str,
    pub password: &'static str,
    pub name: &'static str,
}

/// The accounts the demo provider knows.
pub const USERS: [DemoUser; 2] = [
    DemoUser { email: "alice@example.com", password: "ferrygate-demo", name: "Alice Jansen" },
    DemoUser { email: "bob@example.com", password: "ferrygate-demo", name: "Bob de Vries" },
];

/// The demo account with this email (any case, trimmed) and password.
fn demo_user(email: &str, password: &str) -> Option<DemoUser> {
    USERS.iter().copied().find(|u| u.email.eq_ignore_ascii_case(email.trim()) && u.password == password)
}

/// Accounts for load tests: any `load-…@example.com` with the demo password
/// (the benchmark harness logs in as many different users at once).
fn load_user(email: &str, password: &str) -> Option<DemoUser> {
    let is_load = email.starts_with("load-") && email.ends_with("@example.com") && password == USERS[0].password;
    is_load.then_some(DemoUser { email: "load@example.com", password: USERS[0].password, name: "Load Tester" })
}

/// The organization and site ids the demo provider expects.
pub const ORGANIZATION_ID: i64 = 12;
pub const SITE_ID: i64 = 34;
/// Lifetime of demo tokens, in seconds.
pub const EXPIRES_IN: u64 = 7200;

struct Issued {
    email: &'static str,
    name: &'static str,
    expires: Instant,
}

#[derive(Default)]
struct State {
    tokens: Mutex<HashMap<String, Issued>>,
    gateway: OnceLock<String>,
    /// Payway: service tokens, login handles, and the registered redirect_uri.
    service_tokens: Mutex<Vec<String>>,
    handles: Mutex<HashMap<String, &'static str>>,
    redirect_uri: OnceLock<String>,
    /// The embedded OpenID issuer of the staff portal.
    issuer: sso::Issuer,
}

/// The demo Payway client.
pub const PAYWAY_CLIENT_ID: &str = "demo-courant";
const PAYWAY_CLIENT_SECRET: &str = "demo-courant-secret";

/// The running demo parts.
pub struct Demo {
    pub site: SocketAddr,
    pub provider: SocketAddr,
    pub portal: SocketAddr,
    pub news: SocketAddr,
    pub payway: SocketAddr,
    pub intranet: SocketAddr,
    pub identity: SocketAddr,
    pub staff: SocketAddr,
    pub issuer: SocketAddr,
    users_csv: std::path::PathBuf,
    state: Arc<State>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("site", &self.site)
            .field("provider", &self.provider)
            .field("portal", &self.portal)
            .field("news", &self.news)
            .field("payway", &self.payway)
            .field("intranet", &self.intranet)
            .field("identity", &self.identity)
            .field("staff", &self.staff)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Demo {
    /// Starts the site, the provider and the portal on loopback ports.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(State::default());
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let site = serve(loopback, handler(state.clone(), site)).await?;
        let provider = serve(loopback, handler(state.clone(), provider)).await?;
        let portal = serve(loopback, handler(state.clone(), portal)).await?;
        let news = serve(loopback, handler(state.clone(), news)).await?;
        let payway = serve(loopback, handler(state.clone(), payway)).await?;
        let intranet = serve(loopback, handler(state.clone(), intranet)).await?;
        let identity = serve(loopback, handler(state.clone(), identity)).await?;
        let staff = serve(loopback, handler(state.clone(), sso::staff)).await?;
        let issuer = serve(loopback, handler(state.clone(), sso::issuer)).await?;
        let _ = state.issuer.url.set(format!("http://{issuer}"));
        let unique = Alphanumeric.sample_string(&mut rand::rng(), 8);
        let users_csv = std::env::temp_dir().join(format!("ferrygate-demo-{}-{unique}-users.csv", std::process::id()));
        // Alice is an administrator, Bob is staff only.
        let mut csv = String::from("email,user_id,external_id,org_id,groups\n");
        for (i, u) in USERS.iter().enumerate() {
            let groups = sso::groups(u.email).join(";");
            csv.push_str(&format!("{},{},emp-{:04},contoso,{groups}\n", u.email, 1001 + i, 7 + i));
        }
        std::fs::write(&users_csv, csv)?;
        Ok(Self { site, provider, portal, news, payway, intranet, identity, staff, issuer, users_csv, state })
    }

    /// Starts only the Qwyk-style provider on a loopback port (for the library
    /// examples, which need a provider to sign in against and nothing else).
    pub async fn start_provider() -> std::io::Result<SocketAddr> {
        serve(([127, 0, 0, 1], 0).into(), handler(Arc::new(State::default()), provider)).await
    }

    /// Tells the portal where the gateway is, for its Home and Logout buttons.
    pub fn set_gateway_url(&self, url: &str) {
        let _ = self.state.gateway.set(url.trim_end_matches('/').to_owned());
    }

    /// The Ferrygate configuration of the demo, listening on `listen` (the
    /// real, bound address: the payway redirect_uri is built from it).
    pub fn config_toml(&self, listen: SocketAddr) -> String {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 48);
        let redirect_uri = format!("http://localhost:{}/landing", listen.port());
        let _ = self.state.redirect_uri.set(redirect_uri.clone());
        fill(
            include_str!("../templates/demo.toml"),
            &[
                ("listen", &listen),
                ("secret", &secret),
                ("provider", &self.provider),
                ("ORGANIZATION_ID", &ORGANIZATION_ID),
                ("SITE_ID", &SITE_ID),
                ("site", &self.site),
                ("portal", &self.portal),
                ("payway", &self.payway),
                ("PAYWAY_CLIENT_ID", &PAYWAY_CLIENT_ID),
                ("PAYWAY_CLIENT_SECRET", &PAYWAY_CLIENT_SECRET),
                ("redirect_uri", &redirect_uri),
                ("news", &self.news),
                ("rest_provider", &self.rest_provider_toml()),
                ("intranet", &self.intranet),
                ("issuer", &self.issuer),
                ("oidc_client", &sso::CLIENT_ID),
                ("oidc_secret", &sso::CLIENT_SECRET),
                ("staff", &self.staff),
            ],
        )
    }
}

impl Demo {
    /// The intranet's identity service as the `demo-rest` provider.
    fn rest_provider_toml(&self) -> String {
        let users = self.users_csv.display();
        fill(include_str!("../templates/rest-provider.toml"), &[("identity", &self.identity), ("users", &users)])
    }

    /// The configuration of `ferrygate demo --behind nginx`: the intranet in
    /// forward-auth mode (as `deploy/examples/forward-auth/ferrygate.toml`),
    /// Ferrygate on `listen` (loopback), nginx on loopback its one trusted proxy.
    pub fn forward_auth_toml(&self, listen: SocketAddr) -> String {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 48);
        fill(
            include_str!("../templates/behind-nginx.toml"),
            &[
                ("listen", &listen),
                ("secret", &secret),
                ("rest_provider", &self.rest_provider_toml()),
                ("intranet", &self.intranet),
            ],
        )
    }
}

/// `template` with each `@name@` replaced by its value (the templates are
/// in `crates/demo/templates/`; the demo's tests load every one).
fn fill(template: &str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("@{name}@"), &value.to_string());
    }
    debug_assert!(unfilled(&out).is_none(), "template marker @{}@ not filled", unfilled(&out).unwrap_or(""));
    out
}

/// The first `@name@` marker left in `text`, if any.
fn unfilled(text: &str) -> Option<&str> {
    // Every text between two `@`, whatever came before (an `a@b` included).
    let inner: Vec<&str> = text.split('@').skip(1).collect();
    let inner = &inner[..inner.len().saturating_sub(1)];
    inner.iter().copied().find(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.users_csv);
    }
}

type Route = fn(Arc<State>, Parts, Bytes) -> Reply;

fn handler(state: Arc<State>, route: Route) -> Handler {
    Arc::new(move |parts, body| {
        let reply = route(state.clone(), parts, body);
        Box::pin(async move { reply })
    })
}

/// The company site: the pages Ferrygate proxies.
fn site(_state: Arc<State>, parts: Parts, _body: Bytes) -> Reply {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match parts.uri.path() {
        "/" => html(StatusCode::OK, pages::landing()),
        "/login" => html(
            StatusCode::OK,
            pages::login(query(&parts, "error").as_deref(), query(&parts, "destination").as_deref()),
        ),
        "/book" => html(StatusCode::OK, pages::wizard(query(&parts, "error").as_deref())),
        "/goodbye" => html(StatusCode::OK, pages::goodbye()),
        _ => html(StatusCode::NOT_FOUND, pages::not_found()),
    }
}

#[derive(Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
    organization_id: i64,
    site_id: i64,
}

/// The Qwyk-style provider API.
fn provider(state: Arc<State>, parts: Parts, body: Bytes) -> Reply {
    if parts.method != Method::POST || parts.uri.path() != "/api/portals/auth/login" {
        return json(StatusCode::NOT_FOUND, serde_json::json!({ "message": "Not found" }));
    }
    let is_json = parts
        .headers
        .get(::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Some(req) = is_json.then(|| serde_json::from_slice::<LoginRequest>(&body).ok()).flatten() else {
        return json(StatusCode::UNPROCESSABLE_ENTITY, serde_json::json!({ "message": "Malformed login request" }));
    };
    if (req.organization_id, req.site_id) != (ORGANIZATION_ID, SITE_ID) {
        return json(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({ "message": "Unknown organization or site" }),
        );
    }
    let email = req.email.trim();
    let Some(user) = demo_user(email, &req.password).or_else(|| load_user(email, &req.password)) else {
        return json(StatusCode::UNAUTHORIZED, serde_json::json!({ "message": "Invalid credentials" }));
    };
    let token = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let issued =
        Issued { email: user.email, name: user.name, expires: Instant::now() + Duration::from_secs(EXPIRES_IN) };
    if let Ok(mut tokens) = state.tokens.lock() {
        // Expired tokens go in batches, not on every login.
        if tokens.len() % 4096 == 4095 {
            tokens.retain(|_, t| t.expires > Instant::now());
        }
        tokens.insert(token.clone(), issued);
    }
    json(StatusCode::OK, serde_json::json!({ "access_token": token, "token_type": "bearer", "expires_in": EXPIRES_IN }))
}

/// The portal: accepts `?token=…&destination=…` and shows the signed-in user.
fn portal(state: Arc<State>, parts: Parts, _body: Bytes) -> Reply {
    if parts.uri.path() != "/auth/external" {
        return html(StatusCode::NOT_FOUND, pages::not_found());
    }
    let gateway = state.gateway.get().cloned().unwrap_or_default();
    let token = query(&parts, "token").unwrap_or_default();
    let found = state.tokens.lock().ok().and_then(|tokens| {
        tokens.get(&token).filter(|t| t.expires > Instant::now()).map(|t| (t.email, t.name, t.expires - Instant::now()))
    });
    let Some((email, name, remaining)) = found else {
        return html(StatusCode::UNAUTHORIZED, pages::portal_refused(&gateway));
    };
    let portal_page = pages::PortalPage {
        name,
        email,
        token_type: &query(&parts, "token_type").unwrap_or_default(),
        expires_in: &query(&parts, "expires_in").unwrap_or_default(),
        remaining,
        destination: &query(&parts, "destination").unwrap_or_default(),
        gateway: &gateway,
    };
    html(StatusCode::OK, pages::portal(&portal_page))
}

/// The newspaper site: front page, its own login form, and the OAuth2 landing page.
fn news(_state: Arc<State>, parts: Parts, _body: Bytes) -> Reply {
    let who = header(&parts, "x-ferrygate-user");
    match parts.uri.path() {
        "/" => html(StatusCode::OK, pages::news_landing(&who)),
        "/login" => html(StatusCode::OK, pages::news_login(query(&parts, "error").as_deref(), &who)),
        "/landing" => {
            let destination =
                parts.headers.get("x-ferrygate-destination").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let code = query(&parts, "code").unwrap_or_default();
            let state = query(&parts, "state").unwrap_or_default();
            html(StatusCode::OK, pages::news_landing_page(&code, &state, &destination, &who))
        }
        _ => html(StatusCode::NOT_FOUND, pages::not_found()),
    }
}

/// The Payway-style provider: token endpoint, login endpoint, authorization page.
fn payway(state: Arc<State>, parts: Parts, body: Bytes) -> Reply {
    let form = form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    match (parts.method.clone(), parts.uri.path()) {
        (Method::POST, "/oauth2/token") => {
            let ok = field("grant_type") == "client_credentials"
                && field("client_id") == PAYWAY_CLIENT_ID
                && field("client_secret") == PAYWAY_CLIENT_SECRET
                && field("scope") == "/oauth2/login/x";
            if !ok {
                return json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": "invalid_client" }));
            }
            let token = Alphanumeric.sample_string(&mut rand::rng(), 32);
            if let Ok(mut tokens) = state.service_tokens.lock() {
                tokens.push(token.clone());
            }
            json(StatusCode::OK, serde_json::json!({ "access_token": token, "expires_in": 3600 }))
        }
        (Method::POST, "/oauth2/login") => {
            let token =
                parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("OAuth "));
            let known = token.is_some_and(|t| state.service_tokens.lock().is_ok_and(|ts| ts.iter().any(|k| k == t)));
            if !known {
                return json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": "invalid_token" }));
            }
            let Some(user) = demo_user(field("username"), field("password")) else {
                return json(
                    StatusCode::OK,
                    serde_json::json!({ "status": "error", "code": "invalid_username_or_password", "field": "unspecified_field", "message": "Invalid username and/or password", "error_data": null }),
                );
            };
            let handle = Alphanumeric.sample_string(&mut rand::rng(), 36);
            if let Ok(mut handles) = state.handles.lock() {
                handles.insert(handle.clone(), user.email);
            }
            json(StatusCode::OK, serde_json::json!({ "status": "ok", "result": handle }))
        }
        (Method::GET, "/oauth2/auth") => {
            let handle = query(&parts, "login_handle").unwrap_or_default();
            let user = state.handles.lock().ok().and_then(|mut h| h.remove(&handle));
            let redirect_uri = query(&parts, "redirect_uri").unwrap_or_default();
            let registered = state.redirect_uri.get().is_some_and(|r| *r == redirect_uri);
            if user.is_none() || !registered || query(&parts, "client_id").as_deref() != Some(PAYWAY_CLIENT_ID) {
                return text(StatusCode::BAD_REQUEST, "invalid authorization request\n");
            }
            let code = Alphanumeric.sample_string(&mut rand::rng(), 24);
            let state_param = query(&parts, "state").unwrap_or_default();
            let target = format!(
                "{redirect_uri}?code={code}&state={}",
                form_urlencoded::byte_serialize(state_param.as_bytes()).collect::<String>()
            );
            ::http::Response::builder()
                .status(StatusCode::FOUND)
                .header(::http::header::LOCATION, target)
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap_or_default()
        }
        _ => json(StatusCode::NOT_FOUND, serde_json::json!({ "error": "not_found" })),
    }
}

/// The intranet: a public front page, its own forms, and a protected workspace.
fn intranet(_state: Arc<State>, parts: Parts, _body: Bytes) -> Reply {
    let header = |name: &str| header(&parts, name);
    let who = header("x-ferrygate-user");
    match parts.uri.path() {
        "/" => html(StatusCode::OK, pages::intranet_landing(&who)),
        "/login" => html(
            StatusCode::OK,
            pages::intranet_login(query(&parts, "error").as_deref(), query(&parts, "destination").as_deref(), &who),
        ),
        "/forgot-password" => html(StatusCode::OK, pages::intranet_forgot(query(&parts, "sent").is_some(), &who)),
        p if p == "/app" || p.starts_with("/app/") => {
            let user = header("x-ferrygate-user");
            if user.is_empty() {
                // Ferrygate guards /app; reaching here without identity is a misconfiguration.
                return text(StatusCode::FORBIDDEN, "no identity\n");
            }
            html(
                StatusCode::OK,
                pages::intranet_app(
                    &user,
                    &header("x-ferrygate-user-id"),
                    &header("x-ferrygate-org-id"),
                    &header("x-ferrygate-groups"),
                    &header("x-ferrygate-provider"),
                    &who,
                ),
            )
        }
        p if p == "/admin" || p.starts_with("/admin/") => {
            // Ferrygate admits only the `admins` group here ([[sites.authorize]]).
            html(StatusCode::OK, pages::intranet_admin(&who, &header("x-ferrygate-groups"), &who))
        }
        _ => html(StatusCode::NOT_FOUND, pages::not_found()),
    }
}

/// The rest-style identity service: 200 for a right password, 401 otherwise.
fn identity(_state: Arc<State>, parts: Parts, body: Bytes) -> Reply {
    match (parts.method.clone(), parts.uri.path()) {
        (Method::POST, "/auth") => {
            let creds: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let login = creds["login"].as_str().unwrap_or("");
            let password = creds["password"].as_str().unwrap_or("");
            if demo_user(login, password).is_some() {
                json(StatusCode::OK, serde_json::json!({ "authenticated": true }))
            } else {
                json(StatusCode::UNAUTHORIZED, serde_json::json!({ "authenticated": false }))
            }
        }
        (Method::GET, "/forgot") => json(StatusCode::OK, serde_json::json!({ "sent": true })),
        _ => json(StatusCode::NOT_FOUND, serde_json::json!({})),
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn every_marker_of_a_template_is_filled() {
        let text = fill("a = \"@x@\"\nb = @y@\n", &[("x", &"one"), ("y", &2)]);
        assert_eq!(text, "a = \"one\"\nb = 2\n");
        assert_eq!(unfilled("a = \"@x@\""), Some("x"));
        assert_eq!(unfilled("mail = \"a@b.example\""), None);
        assert_eq!(unfilled("mail = \"a@b.example\" @x@"), Some("x"), "a marker after a literal @");
        for template in [
            include_str!("../templates/demo.toml"),
            include_str!("../templates/behind-nginx.toml"),
            include_str!("../templates/rest-provider.toml"),
        ] {
            assert!(unfilled(template).is_some(), "a template without markers");
        }
        // And filling names them all: no marker is left.
        let rest =
            fill(include_str!("../templates/rest-provider.toml"), &[("identity", &"127.0.0.1:1"), ("users", &"u.csv")]);
        assert_eq!(unfilled(&rest), None, "{rest}");
    }
}
