//! The `rest` provider (spec 1.3): credential pass-through to any web service.
//!
//! The user's email must first be in the registered-user directory; an
//! unknown email fails exactly like a wrong password, in similar time, and
//! sends nothing upstream. Known users' credentials are rendered into the
//! configured request (URL, headers, JSON/form/XML body, optional Basic auth),
//! each value escaped for where it lands. Exactly HTTP 200 means
//! authenticated; redirects are never followed.

pub mod config;
pub mod device;
pub mod directory;
pub mod render;
pub mod template;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use ferrygate_core::client::credential_header;
use ferrygate_core::provider::{BoxFuture, ForgotPassword, Grant, LoginAttempt, Provider, UserInfo};
use ferrygate_core::{ExposeSecret, HttpClient, LoginError};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;

pub use crate::config::{BodyFormat, RestAuth, RestConfig, RestKind};
use crate::directory::{Directory, DirectoryError, User};
use crate::render::Values;
use crate::template::Placeholder;

/// A configured rest provider.
#[derive(Clone)]
pub struct Rest {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: RestConfig,
    directory: Directory,
    client: HttpClient,
    /// Smoothed latency of upstream calls, in microseconds: what an unknown
    /// email waits instead, so it cannot be told from a wrong password.
    latency_us: AtomicU64,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("name", &self.inner.name).field("users", &self.inner.directory.len()).finish()
    }
}

/// Where the upstream's answer leaves the attempt: exactly 200 authenticates.
pub fn decide(status: StatusCode) -> Result<(), LoginError> {
    match status.as_u16() {
        200 => Ok(()),
        100..=499 => Err(LoginError::InvalidCredentials),
        _ => Err(LoginError::ProviderUnavailable),
    }
}

impl Rest {
    /// Loads the user directory; an error names the line.
    pub fn new(name: &str, config: &RestConfig, client: HttpClient) -> Result<Self, DirectoryError> {
        let directory = Directory::load(&config.users)?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config: config.clone(),
                directory,
                client,
                latency_us: AtomicU64::new(50_000),
            }),
        })
    }
}

impl Inner {
    fn values<'a>(&self, user: &'a User, password: &'a str, ua: &'a str, ip: &'a str, name: &'a str) -> Values<'a> {
        Values {
            user_id: &user.user_id,
            email: &user.email,
            password,
            external_id: &user.external_id,
            org_id: &user.org_id,
            device_os: device::os(ua),
            device_name: name,
            device_ip: ip,
        }
    }

    fn remember_latency(&self, took: Duration) {
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.latency_us.load(Ordering::Relaxed);
        self.latency_us.store((old * 7 + sample) / 8, Ordering::Relaxed);
    }

    /// What an unknown email costs: about as long as a real refusal.
    async fn pretend(&self) {
        let typical = Duration::from_micros(self.latency_us.load(Ordering::Relaxed));
        tokio::time::sleep(typical.min(self.config.timeout)).await;
    }

    async fn send(&self, req: Request<Full<Bytes>>, what: &str) -> Result<StatusCode, LoginError> {
        let started = Instant::now();
        let answer = self.client.send(req, self.config.timeout).await;
        self.remember_latency(started.elapsed());
        answer.map(|a| a.status).map_err(|e| e.logged(&self.name, what))
    }

    fn request(&self, v: &Values<'_>, basic: Option<(&str, &str)>) -> Result<Request<Full<Bytes>>, LoginError> {
        v.check()?;
        let c = &self.config;
        let url = render::url(&c.url, v);
        let mut req = Request::builder().method(c.method.clone()).uri(url.as_str());
        for (name, template) in &c.headers {
            let mut value = render::header(template, v)?;
            value.set_sensitive(template.uses(Placeholder::UserPassword));
            req = req.header(name, value);
        }
        if let Some((user, password)) = basic {
            // RFC 7617: the user-id cannot hold a colon; base64 makes anything else safe.
            if user.contains(':') {
                return Err(LoginError::InvalidInput);
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            req = req
                .header(AUTHORIZATION, credential_header(&format!("Basic {encoded}")).ok_or(LoginError::InvalidInput)?);
        }
        let body = if c.method == Method::GET || c.body.is_empty() {
            Bytes::new()
        } else {
            let (content_type, body) = match c.body_format {
                BodyFormat::Json => ("application/json", Bytes::from(render::json(&c.body, v))),
                BodyFormat::Form => ("application/x-www-form-urlencoded", Bytes::from(render::form(&c.body, v))),
                BodyFormat::Xml => ("application/xml", Bytes::from(render::xml(&c.xml_root, &c.body, v)?)),
            };
            req = req.header(CONTENT_TYPE, content_type);
            body
        };
        req.body(Full::new(body)).map_err(|e| {
            tracing::error!(provider = %self.name, error = %e, "the rendered request is invalid (check providers.{}.url)", self.name);
            LoginError::ProviderUnavailable
        })
    }

    async fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginError> {
        let password = attempt.password.expose_secret();
        let ip = attempt.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let name = device::name(attempt.user_agent);
        let Some(user) = self.directory.get(attempt.username) else {
            // Rendered all the same, and thrown away: a password that cannot be
            // sent (`invalid_input`) is refused alike for unknown accounts, or
            // that refusal would tell which accounts exist.
            let nobody = User::default();
            let basic = (self.config.auth == RestAuth::Basic).then_some(("", password));
            self.request(&self.values(&nobody, password, attempt.user_agent, &ip, &name), basic)?;
            self.pretend().await;
            return Err(LoginError::InvalidCredentials);
        };
        let values = self.values(user, password, attempt.user_agent, &ip, &name);
        let basic = (self.config.auth == RestAuth::Basic).then_some((user.email.as_str(), password));
        let req = self.request(&values, basic)?;
        decide(self.send(req, "authentication call").await?)?;
        let info = UserInfo::default()
            .with_email(Some(user.email.clone()))
            .with_user_id(Some(user.user_id.clone()).filter(|s| !s.is_empty()))
            .with_org_id(Some(user.org_id.clone()).filter(|s| !s.is_empty()))
            .with_external_id(Some(user.external_id.clone()).filter(|s| !s.is_empty()))
            .with_groups(user.groups());
        // Back to the site itself: the validated destination.
        Ok(Grant::redirect(attempt.destination).with_session_ttl(Some(self.config.session_ttl)).with_user(info))
    }

    async fn forgot_password(&self, request: ForgotPassword) {
        let Some(template) = &self.config.forgot_password_url else { return };
        let outcome = match self.directory.get(&request.email) {
            None => "unknown_account",
            Some(user) => {
                let ip = request.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
                let name = device::name(&request.user_agent);
                let values = self.values(user, "", &request.user_agent, &ip, &name);
                let sent = Request::get(render::url(template, &values)).body(Full::new(Bytes::new()));
                match sent {
                    Err(_) => "invalid_request",
                    Ok(req) => match self.send(req, "forgot-password call").await {
                        Ok(StatusCode::OK) => "sent",
                        Ok(_) => "refused",
                        Err(e) => e.code(),
                    },
                }
            }
        };
        tracing::info!(provider = %self.name, site = %request.site.name, outcome, "forgot-password request handled");
        metrics::counter!("ferrygate_forgot_password_total", "provider" => self.name.clone(), "outcome" => outcome)
            .increment(1);
    }
}

impl Provider for Rest {
    fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    fn authenticate<'a>(&'a self, attempt: &'a LoginAttempt<'a>) -> BoxFuture<'a, Result<Grant, LoginError>> {
        Box::pin(self.inner.login(attempt))
    }

    fn forgot_password(&self, request: ForgotPassword) -> Option<BoxFuture<'static, ()>> {
        let inner = self.inner.clone();
        Some(Box::pin(async move { inner.forgot_password(request).await }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_200_authenticates() {
        for (status, want) in [
            (200, Ok(())),
            (201, Err(LoginError::InvalidCredentials)),
            (204, Err(LoginError::InvalidCredentials)),
            (302, Err(LoginError::InvalidCredentials)),
            (401, Err(LoginError::InvalidCredentials)),
            (500, Err(LoginError::ProviderUnavailable)),
            (503, Err(LoginError::ProviderUnavailable)),
        ] {
            assert_eq!(decide(StatusCode::from_u16(status).unwrap()), want, "{status}");
        }
    }
}
