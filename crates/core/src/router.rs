//! The site router: the outermost layer. It reads the request's authority
//! once (`crate::authority`), picks the site by its host (a malformed
//! authority is 400, an unknown host without a default site 421), makes the
//! `Host` the site will hear that same normalised authority, and matches the
//! canonical path (`crate::path`) against the site's owned routes and
//! protected paths — once, for every layer after it, as the [`Target`]
//! request extension.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use tower::{Layer, Service};

use crate::authority;
use crate::config::Config;
use crate::decision::Guard;
use crate::future::{GatewayResponse, ResponseFuture};
use crate::path::BadPath;
use crate::respond;
use crate::site::{OwnedRoute, Site};

/// Where a request goes: its site, the site's owned route at its path if
/// any, and what the path asks (its rule, and whether it is protected).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Target {
    pub site: Arc<Site>,
    /// The owned route at the canonical path, if any.
    pub owned: Option<OwnedRoute>,
    /// Whether the canonical path needs a signed-in user: it lies in one of
    /// `protected_paths` or under an authorization rule for the request's
    /// method, and no public rule opens it (never true for an owned route).
    pub protected: bool,
    /// The authorization rule for the path (an index in `site.authorize`).
    pub rule: Option<usize>,
}

impl Target {
    /// The rule that decides the request, if any.
    pub fn rule(&self) -> Option<&crate::site::AuthorizeRule> {
        self.rule.and_then(|i| self.site.authorize.get(i))
    }

    /// What the path asks of a request that is not for an owned route, from
    /// a client at `client` (after `trusted_proxies`).
    pub(crate) fn guard(&self, client: Option<std::net::IpAddr>) -> Guard<'_> {
        match self.protected {
            true => Guard::Protected { rule: self.rule(), client },
            false => Guard::Public,
        }
    }
}

/// Adds a [`SiteRouter`] around a service.
#[derive(Debug, Clone)]
pub(crate) struct SiteRouterLayer {
    config: Arc<Config>,
    /// The 421 answer's text: which hosts are configured (made once).
    misdirected: Bytes,
}

impl SiteRouterLayer {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        let hosts: Vec<&str> = config.sites.iter().flat_map(|s| s.hosts.iter().map(String::as_str)).collect();
        let misdirected = format!(
            "no site is configured for this host; the configured hosts are: {} \
             (send one of them as Host, or add a site without hosts to serve any other)\n",
            hosts.join(", ")
        );
        Self { config, misdirected: misdirected.into() }
    }
}

impl<S> Layer<S> for SiteRouterLayer {
    type Service = SiteRouter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SiteRouter { inner, config: self.config.clone(), misdirected: self.misdirected.clone() }
    }
}

/// The outermost layer: picks the site by the request's authority, puts
/// the path in normal form and matches it once, as the [`Target`] extension.
#[derive(Debug, Clone)]
pub struct SiteRouter<S> {
    inner: S,
    config: Arc<Config>,
    misdirected: Bytes,
}

impl<S, B, R> Service<Request<B>> for SiteRouter<S>
where
    S: Service<Request<B>, Response = GatewayResponse<R>>,
{
    type Response = GatewayResponse<R>;
    type Error = S::Error;
    type Future = ErrorPages<ResponseFuture<S::Future, R, S::Error>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // A browser's navigation gets Ferrygate's refusals as a page (the
        // site's own answers are never touched): decided here, for every layer.
        let html = crate::error_page::wants_html(req.headers());
        let answer = match target(&self.config, &mut req) {
            Ok(target) => {
                let site = html.then(|| target.site.clone());
                req.extensions_mut().insert(target);
                return ErrorPages { fut: ResponseFuture::inner(self.inner.call(req)), html, site };
            }
            Err(Unroutable::Malformed) => {
                ResponseFuture::ready(respond::refused(StatusCode::BAD_REQUEST, "malformed_host", "malformed host\n"))
            }
            Err(Unroutable::BadPath(e)) => {
                tracing::debug!(error = %e, "request refused");
                ResponseFuture::ready(respond::refused(StatusCode::BAD_REQUEST, "bad_path", bad_path_text(e)))
            }
            Err(Unroutable::NoCheck) => {
                ResponseFuture::ready(respond::refused(StatusCode::NOT_FOUND, "not_found", "not found\n"))
            }
            Err(Unroutable::NoSite) => ResponseFuture::ready(respond::refused(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected",
                self.misdirected.clone(),
            )),
        };
        ErrorPages { fut: answer, html, site: None }
    }
}

pin_project_lite::pin_project! {
    /// The gateway's answer; for a client that asks for HTML, Ferrygate's
    /// own refusals as the error page ([`crate::error_page`]).
    pub struct ErrorPages<F> {
        #[pin]
        fut: F,
        html: bool,
        site: Option<Arc<Site>>,
    }
}

impl<F, R, E> std::future::Future for ErrorPages<F>
where
    F: std::future::Future<Output = Result<GatewayResponse<R>, E>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.fut.poll(cx))?;
        if !*this.html {
            return Poll::Ready(Ok(res));
        }
        Poll::Ready(Ok(match crate::error_page::render(res, this.site.as_deref()) {
            Ok(page) => page.map(http_body_util::Either::Right),
            Err(res) => res,
        }))
    }
}

/// The site named by a trusted proxy's `X-Forwarded-Host` (its last value).
fn forwarded_site<'c, B>(config: &'c Config, req: &Request<B>) -> Option<&'c Arc<Site>> {
    let conn = req.extensions().get::<crate::conn::ClientConn>()?;
    if !crate::conn::is_trusted(conn.peer.ip(), &config.server.trusted_proxies) {
        return None;
    }
    let forwarded = req.headers().get("x-forwarded-host")?.to_str().ok()?;
    let authority = authority::parse(forwarded.rsplit(',').next()?.trim()).ok()?;
    config.site_for_host(Some(authority.host()))
}

/// Why no site takes a request.
enum Unroutable {
    /// 400: the authority is not a valid host.
    Malformed,
    /// 421: no site has that host, and there is no default site.
    NoSite,
    /// 404: a forward-auth path the chosen site does not answer.
    NoCheck,
    /// 400: an encoded slash, a malformed escape, a dot segment with parameters.
    BadPath(BadPath),
}

/// The 400 answer's text for a refused path (also forward-auth's).
pub(crate) fn bad_path_text(e: BadPath) -> &'static str {
    match e {
        BadPath::EncodedSlash => "encoded slash or backslash in path (server.allow_encoded_slashes is off)\n",
        BadPath::BadEscape => "malformed percent-escape in path\n",
        BadPath::DotParameters => "dot segment with parameters in path\n",
    }
}

/// Puts `normal` (the path in normal form) in place of the request's path,
/// keeping its query (and its scheme and authority in absolute form).
fn set_path<B>(req: &mut Request<B>, normal: &str) -> Result<(), BadPath> {
    let mut parts = req.uri().clone().into_parts();
    let pq = match req.uri().query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal.to_owned(),
    };
    // The normal form holds only characters the request's path held, and
    // `%XX` escapes: always a valid path.
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(pq).map_err(|_| BadPath::BadEscape)?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| BadPath::BadEscape)?;
    Ok(())
}

/// The request's [`Target`], its `Host` set to the normalised authority.
fn target<B>(config: &Config, req: &mut Request<B>) -> Result<Target, Unroutable> {
    let (site, rewrite) = match authority::of_request(req) {
        Ok(a) => {
            let site = config.site_for_host(a.as_ref().map(|a| a.host()));
            let rewrite = a.filter(|a| a.changed() || req.uri().authority().is_some()).map(|a| a.header_value());
            (site, rewrite)
        }
        Err(e) => {
            tracing::debug!(error = %e, "request refused");
            return Err(Unroutable::Malformed);
        }
    };
    if let Some(v) = rewrite {
        req.headers_mut().insert(header::HOST, v);
    }
    // The path every decision is made on is the path the site receives.
    // A target without a path (CONNECT's authority form) has none to change.
    let has_path = req.uri().path_and_query().is_some();
    let raw = if has_path { req.uri().path() } else { "/" };
    if let Cow::Owned(normal) =
        crate::path::normal(raw, config.server.allow_encoded_slashes).map_err(Unroutable::BadPath)?
    {
        set_path(req, &normal).map_err(Unroutable::BadPath)?;
    }
    let path = crate::path::matching(if has_path { req.uri().path() } else { "/" });
    // A forward-auth check names its site in X-Forwarded-Host (from a trusted proxy).
    let checks_here = config.is_forward_auth_path(&path);
    let site = match checks_here.then(|| forwarded_site(config, req)).flatten() {
        Some(forwarded) => Some(forwarded),
        None => site,
    };
    let Some(site) = site else { return Err(Unroutable::NoSite) };
    let owned = site.owned_route(&path);
    if owned.is_none() && checks_here {
        // A forward-auth path of another site (or of this one's, spelt
        // otherwise): never proxied — a site's catch-all 200 would read as
        // "allowed" to the proxy asking.
        return Err(Unroutable::NoCheck);
    }
    let rule = if owned.is_none() { site.rule(&path, Some(req.method())) } else { None };
    // A public rule is a hole in `protected_paths`; any other rule protects.
    let public = rule.and_then(|i| site.authorize.get(i)).is_some_and(|r| r.public);
    let protected = owned.is_none() && !public && (rule.is_some() || site.is_protected(&path));
    Ok(Target { site: site.clone(), owned, protected, rule })
}
