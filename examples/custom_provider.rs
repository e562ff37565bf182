//! A provider kind of your own: written in your crate, registered by its
//! `kind` name next to the built-in ones, configured in TOML like any other.
//!
//! ```sh
//! cargo run --example custom_provider   # then open http://127.0.0.1:3000/account
//! ```
//!
//! The kind here, `static`, checks a small fixed list of accounts from its
//! table (fine for a demo or a test, not for production); a real one would
//! call its service with `Build::client()`. Sign in as `alice@example.com` /
//! `change-me`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use ferrygate::core::kind::{Build, SiteRules};
use ferrygate::core::{
    BoxFuture, ExposeSecret, Grant, LoginAttempt, LoginError, Provider, SecretString, SignedIn, UserInfo,
};
use ferrygate::{Config, ProviderKind};

/// `kind = "static"`.
pub(crate) struct StaticKind;

/// Its table, as written: serde refuses unknown keys, naming them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// email → password
    accounts: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "ferrygate::core::config::de::duration")]
    session_ttl: Option<Duration>,
}

impl ProviderKind for StaticKind {
    fn name(&self) -> &'static str {
        "static"
    }

    /// Signed-in users go to a destination on the site itself (no portal).
    fn site_rules(&self) -> SiteRules {
        SiteRules::default()
    }

    fn build(&self, table: toml::Table, build: &mut Build<'_, '_>) -> Option<Arc<dyn Provider>> {
        let t: Table = build.parse(table)?;
        if t.accounts.is_empty() {
            build.error("accounts", "at least one account");
            return None;
        }
        let session_ttl = build.duration("session_ttl", t.session_ttl, Duration::from_secs(3600));
        let accounts =
            t.accounts.into_iter().map(|(email, pw)| (email.to_lowercase(), SecretString::from(pw))).collect();
        Some(Arc::new(Static { accounts, session_ttl }))
    }
}

/// The provider the kind builds.
struct Static {
    accounts: BTreeMap<String, SecretString>,
    session_ttl: Duration,
}

impl Provider for Static {
    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        let known = self.accounts.get(&attempt.username.to_lowercase());
        let ok = known.is_some_and(|pw| pw.expose_secret() == attempt.password.expose_secret());
        let grant = ok.then(|| {
            let user = UserInfo::default().with_email(Some(attempt.username.to_lowercase()));
            Grant::redirect(attempt.destination).with_session_ttl(Some(self.session_ttl)).with_user(user)
        });
        Box::pin(async move { grant.ok_or(LoginError::InvalidCredentials) })
    }
}

/// The configuration: a `static` provider and a site using it.
pub(crate) const CONFIG: &str = r#"
[sessions]
secret = "${FERRYGATE_SESSION_SECRET}"
cookie_secure = false

[providers.staff]
kind = "static"
accounts = { "alice@example.com" = "change-me" }
session_ttl = "8h"

[[sites]]
name = "intranet"
upstream = "http://127.0.0.1:3000"
provider = "staff"
protected_paths = ["/account"]

[sites.login]
path = "/login"

[sites.portal]
default_destination = "/account"
allowed_destinations = ["/account"]
"#;

/// The built-in kinds plus ours, and the gateway for `text`.
pub(crate) async fn gateway(text: &str, secret: &str) -> Result<ferrygate::Gateway, ferrygate::core::BoxError> {
    let kinds = ferrygate::kinds().with(StaticKind);
    let vars = |name: &str| (name == "FERRYGATE_SESSION_SECRET").then(|| secret.to_owned());
    let loaded = Config::from_toml_with_vars(text, ".".as_ref(), &kinds, &vars)?;
    Ok(ferrygate::Gateway::from_config(loaded.config).await?)
}

/// The app's routes behind the layer.
pub(crate) fn router(gateway: &ferrygate::Gateway) -> Router {
    Router::new()
        .route("/login", get(|| async { axum::response::Html(FORM) }))
        .route("/account", get(|user: SignedIn| async move { format!("Hello, {}", user.user) }))
        .layer(gateway.layer())
}

const FORM: &str = r#"<form method="post" action="/login"><input name="email"><input name="password" type="password"><button>Sign in</button></form>"#;

#[tokio::main]
async fn main() -> Result<(), ferrygate::core::BoxError> {
    let secret = std::env::var("FERRYGATE_SESSION_SECRET").unwrap_or_else(|_| {
        format!("{}{}", ferrygate::core::session::new_state(), ferrygate::core::session::new_state())
    });
    let gateway = gateway(CONFIG, &secret).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000/account — sign in as alice@example.com / change-me");
    axum::serve(listener, router(&gateway)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

    fn login(password: &str) -> http::Request<axum::body::Body> {
        http::Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!("email=alice%40example.com&password={password}")))
            .unwrap()
    }

    #[tokio::test]
    async fn a_kind_of_ones_own_signs_users_in() {
        let app = router(&gateway(CONFIG, SECRET).await.unwrap());
        let res = app.clone().oneshot(login("change-me")).await.unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/account");
        let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let page = http::Request::get("/account").header("cookie", cookie).body(axum::body::Body::empty()).unwrap();
        let res = app.clone().oneshot(page).await.unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(body, "Hello, alice@example.com");
        let res = app.oneshot(login("wrong")).await.unwrap();
        assert_eq!(res.headers()["location"], "/login?error=invalid_credentials");
    }

    #[tokio::test]
    async fn its_table_is_checked_naming_the_key() {
        let bad = CONFIG.replace("session_ttl = \"8h\"", "session_ttl = \"8h\"\ncolour = \"blue\"");
        let err = gateway(&bad, SECRET).await.unwrap_err().to_string();
        assert!(err.contains("providers.staff.colour"), "{err}");
        let empty = CONFIG.replace(r#"{ "alice@example.com" = "change-me" }"#, "{}");
        let err = gateway(&empty, SECRET).await.unwrap_err().to_string();
        assert!(err.contains("providers.staff.accounts: at least one account"), "{err}");
    }
}
