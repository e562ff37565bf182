//! Discovery (SPEC 1.4): `{issuer}/.well-known/openid-configuration`,
//! fetched on first use and kept; its `issuer` must equal the configured
//! one exactly, and every endpoint must be https (plain http only on a
//! loopback host). A failed fetch is not kept: the next login tries again.

use ferrygate_core::LoginError;
use serde::Deserialize;

use crate::Oidc;

/// The endpoints in use: discovered, or overridden by the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) token: String,
    pub(crate) jwks: String,
    pub(crate) userinfo: Option<String>,
}

impl Endpoints {
    /// The first endpoint a password or token would cross in clear to another host.
    fn insecure(&self) -> Option<&str> {
        [Some(&self.token), Some(&self.jwks), self.userinfo.as_ref()]
            .into_iter()
            .flatten()
            .find(|url| !url::Url::parse(url).is_ok_and(|u| ferrygate_core::client::secure_or_loopback(&u)))
            .map(String::as_str)
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    userinfo_endpoint: Option<String>,
}

impl Oidc {
    /// The endpoints: discovered once (a failure is not kept), overrides first.
    pub(crate) async fn endpoints(&self) -> Result<&Endpoints, LoginError> {
        self.endpoints.get_or_try_init(|| self.discover()).await
    }

    /// Discovery, and the overrides on top of it.
    async fn discover(&self) -> Result<Endpoints, LoginError> {
        let c = &self.config;
        let discovered = if c.token_endpoint.is_some() && c.jwks_uri.is_some() {
            None
        } else {
            let url = format!("{}/.well-known/openid-configuration", c.issuer.trim_end_matches('/'));
            let doc: Discovery = self.get_json(&url, "discovery").await?;
            if doc.issuer != c.issuer {
                tracing::error!(provider = %self.name, configured = %c.issuer, discovered = %doc.issuer,
                    "the discovery document names another issuer");
                return Err(LoginError::ProviderUnavailable);
            }
            Some(doc)
        };
        let pick = |over: &Option<String>, found: Option<&Option<String>>| {
            over.clone().or_else(|| found.and_then(|f| f.clone())).filter(|u| !u.is_empty())
        };
        let d = discovered.as_ref();
        let token = pick(&c.token_endpoint, d.map(|d| &d.token_endpoint));
        let jwks = pick(&c.jwks_uri, d.map(|d| &d.jwks_uri));
        let userinfo = pick(&c.userinfo_endpoint, d.map(|d| &d.userinfo_endpoint));
        let (Some(token), Some(jwks)) = (token, jwks) else {
            tracing::error!(provider = %self.name, "discovery gave no token_endpoint or jwks_uri");
            return Err(LoginError::ProviderUnavailable);
        };
        let endpoints = Endpoints { token, jwks, userinfo };
        if let Some(url) = endpoints.insecure() {
            tracing::error!(provider = %self.name, endpoint = %url,
                "a discovered endpoint is not https:// (plain http:// only on a loopback host)");
            return Err(LoginError::ProviderUnavailable);
        }
        Ok(endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_endpoints_must_be_https_or_loopback() {
        let at = |token: &str, userinfo: Option<&str>| Endpoints {
            token: token.into(),
            jwks: "https://idp.example/keys".into(),
            userinfo: userinfo.map(str::to_owned),
        };
        assert_eq!(at("https://idp.example/token", None).insecure(), None);
        assert_eq!(at("http://127.0.0.1:8080/token", Some("http://localhost/u")).insecure(), None);
        assert_eq!(at("http://[::1]:1/token", None).insecure(), None);
        assert_eq!(at("http://idp.example/token", None).insecure(), Some("http://idp.example/token"));
        assert_eq!(at("https://idp.example/token", Some("http://10.0.0.1/u")).insecure(), Some("http://10.0.0.1/u"));
        assert_eq!(at("not a url", None).insecure(), Some("not a url"));
    }
}
