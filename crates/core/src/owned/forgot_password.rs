//! `forgot_password.path`, POST (spec 1.3): the provider's flow runs detached,
//! and the answer never depends on the account or the outcome.

use std::sync::Arc;

use bytes::Bytes;
use http::header::USER_AGENT;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;

use super::form::{read_fields, Fields};
use super::login::{limit_key, rate_limited, MAX_FIELD_BYTES};
use crate::conn::{self, ClientConn};
use crate::error::{BoxError, LoginError};
use crate::gate::Gate;
use crate::respond::{self, AnswerMode};
use crate::site::Site;

/// `forgot_password.path`, POST: the same answer for every account and outcome.
pub(crate) async fn handle<B>(gate: Arc<Gate>, site: Arc<Site>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mode = AnswerMode::of(req.headers());
    let Some(route) = &site.forgot_password else {
        return respond::text(http::StatusCode::NOT_FOUND, "not found\n");
    };
    if !gate.same_origin(&site, req.uri(), req.headers(), req.extensions()) {
        return respond::login_failure(LoginError::OriginRejected, mode, &route.redirect);
    }
    let conn = req.extensions().get::<ClientConn>().copied();
    let client_ip = conn::client_ip(conn.as_ref(), req.headers(), &gate.config.server.trusted_proxies);
    // Each request may make the provider send an email: counted like a login POST.
    if let Some(ip) = client_ip {
        if let Err(refusal) = gate.limiter.hit_ip(&limit_key(ip)).await {
            return respond::login_failure(rate_limited(refusal), mode, &route.redirect);
        }
    }
    let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (parts, body) = req.into_parts();
    let fields = match read_fields(&parts.headers, body, gate.config.limits.login_body_bytes).await {
        Ok(f) => f,
        Err(e) if !e.user_actionable() => return respond::login_failure(e, mode, &route.redirect),
        Err(_) => Fields::default(),
    };
    let email = fields.get("email").map(str::trim).unwrap_or("");
    if !email.is_empty() && email.len() <= MAX_FIELD_BYTES {
        let request =
            crate::provider::ForgotPassword { site: site.clone(), email: email.to_owned(), client_ip, user_agent };
        if let Some(task) = gate.config.providers.get(&site.provider).and_then(|p| p.provider.forgot_password(request))
        {
            tokio::spawn(task);
        }
    }
    tracing::info!(
        target: "ferrygate::audit",
        event = "forgot_password",
        site = %site.name,
        provider = %site.provider,
        client_ip = client_ip.map(tracing::field::display),
        account = (!email.is_empty()).then(|| gate.accounts.hash(email)),
    );
    match mode {
        AnswerMode::Browser => respond::see_other(&route.redirect, &[]),
        AnswerMode::Json => respond::accepted(),
    }
}
