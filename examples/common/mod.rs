//! What the library examples share: their configuration and the provider to
//! sign in against. Without `FERRYGATE_CONFIG`, the demo's Qwyk-style
//! provider is started in-process and `examples/axum.toml` is loaded with it;
//! with it, the named file is loaded as it is.

use std::net::SocketAddr;

use ferrygate::core::BoxError;

/// The account the demo provider knows.
pub(crate) const EMAIL: &str = "alice@example.com";
pub(crate) const PASSWORD: &str = "ferrygate-demo";

/// Where the examples listen.
pub(crate) const LISTEN: &str = "127.0.0.1:3000";

/// Binds [`LISTEN`] and makes the gateway for it.
#[allow(dead_code)]
pub(crate) async fn listen() -> Result<(tokio::net::TcpListener, ferrygate::Gateway), BoxError> {
    let listener = tokio::net::TcpListener::bind(LISTEN).await?;
    let gateway = gateway(listener.local_addr()?).await?;
    Ok((listener, gateway))
}

/// The gateway `main` serves with: `$FERRYGATE_CONFIG`, else [`with_demo_provider`].
async fn gateway(app: SocketAddr) -> Result<ferrygate::Gateway, BoxError> {
    match std::env::var("FERRYGATE_CONFIG") {
        Ok(path) => Ok(ferrygate::Gateway::from_config(ferrygate::load(path.as_ref())?.config).await?),
        Err(_) => {
            let provider = ferrygate::demo::Demo::start_provider().await?;
            with_demo_provider(provider, app).await
        }
    }
}

/// `examples/axum.toml` for an app at `app`, with the demo provider at
/// `provider`, and a fresh random session secret unless
/// `FERRYGATE_SESSION_SECRET` is set.
pub(crate) async fn with_demo_provider(provider: SocketAddr, app: SocketAddr) -> Result<ferrygate::Gateway, BoxError> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(dir.join("axum.toml"))?;
    let secret = std::env::var("FERRYGATE_SESSION_SECRET").unwrap_or_else(|_| {
        format!("{}{}", ferrygate::core::session::new_state(), ferrygate::core::session::new_state())
    });
    let vars = |name: &str| match name {
        "DEMO_PROVIDER_URL" => Some(format!("http://{provider}")),
        "EXAMPLE_URL" => Some(format!("http://{app}")),
        "FERRYGATE_SESSION_SECRET" => Some(secret.clone()),
        other => std::env::var(other).ok(),
    };
    let loaded = ferrygate::Config::from_toml_with_vars(&text, &dir, &ferrygate::kinds(), &vars)?;
    Ok(ferrygate::Gateway::from_config(loaded.config).await?)
}
