//! `forward_auth.path` (SPEC 2.1): the check nginx `auth_request`, Traefik
//! `ForwardAuth`, Caddy `forward_auth` and Envoy `ext_authz` ask before
//! serving a request. It never authenticates with a provider and never
//! reaches the site; the one provider call it may make is a refreshable
//! session's token renewal ([`crate::refresh`]), as every request of that
//! session does — so a `pass_access_token` site behind forward
//! authentication keeps receiving a current token.
//!
//! The original request comes from `X-Original-URI`/`-Method` (nginx), else
//! `X-Forwarded-Uri`/`-Method` (Traefik, Caddy), else the rest of the path
//! after `forward_auth.path` (Envoy's `path_prefix`); those headers, and the
//! `X-Forwarded-Host` that chose the site, are believed only from
//! `trusted_proxies` — any other peer gets 403. The original path is matched
//! on its canonical form, by the same decision as the session layer's
//! ([`crate::access::decide`]): 200 with the identity headers, 401 (or, with
//! `redirect = true`, 302 to the login page), or 403 `forbidden`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::LOCATION;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::access::{decide, Verdict};
use crate::conn::{is_trusted, ClientConn};
use crate::identity::SignedIn;
use crate::respond;
use crate::site::Site;
use crate::state::Shared;

pub(crate) async fn check<B>(shared: &Arc<Shared>, site: &Site, req: Request<B>) -> Response<Full<Bytes>> {
    // The body, if any, is not needed (and need not be shared across the await).
    let req = Request::from_parts(req.into_parts().0, ());
    let trusted = req
        .extensions()
        .get::<ClientConn>()
        .is_some_and(|c| is_trusted(c.peer.ip(), &shared.config.server.trusted_proxies));
    if !trusted {
        tracing::warn!(site = %site.name, "forward-auth check from a peer not in trusted_proxies");
        return respond::text(StatusCode::FORBIDDEN, "forbidden\n");
    }
    let Some(fa) = &site.forward_auth else { return respond::text(StatusCode::NOT_FOUND, "not found\n") };
    let original = original_uri(&req, &fa.path);
    let path = crate::path::canonical(original.split('?').next().unwrap_or("/"));
    let rule = site.rule(&path).and_then(|i| site.authorize.get(i));
    let session = match shared.session(req.headers(), &site.name).await {
        Ok(found) => found.map(|(_, s)| s),
        Err(e) => {
            tracing::warn!(site = %site.name, error = %e, "session lookup failed");
            return respond::text(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable\n");
        }
    };
    match decide(true, rule, session.as_ref()) {
        Verdict::Allow => {
            let mut res = respond::text(StatusCode::OK, "");
            if let Some(s) = session {
                // `pass_access_token`: for the proxy to copy (nginx `auth_request_set`,
                // Traefik `authResponseHeaders`), as oauth2-proxy's `Authorization`.
                if let Some(token) = crate::refresh::access_token(site, &s) {
                    token.write(res.headers_mut());
                }
                SignedIn::from(s).write_headers(res.headers_mut());
            }
            res
        }
        Verdict::SignIn if fa.redirect => {
            let mut res = respond::text(StatusCode::FOUND, "");
            if let Ok(v) = HeaderValue::from_str(&site.login_target(&original)) {
                res.headers_mut().insert(LOCATION, v);
            }
            res
        }
        Verdict::SignIn => respond::text(StatusCode::UNAUTHORIZED, "unauthenticated\n"),
        Verdict::Forbidden => respond::text(StatusCode::FORBIDDEN, "forbidden\n"),
    }
}

/// The original request's path and query, as the proxy in front reports it.
fn original_uri<'r, B>(req: &'r Request<B>, check_path: &str) -> std::borrow::Cow<'r, str> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    if let Some(uri) = header("x-original-uri").or_else(|| header("x-forwarded-uri")) {
        return uri.into();
    }
    // Envoy's path_prefix: the original path follows the check's own.
    let own = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let rest = strip_prefix_canonically(own, check_path);
    if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}").into()
    } else {
        rest.into()
    }
}

/// `/_ferrygate/auth/admin?x` less `/_ferrygate/auth`: `/admin?x`. The check
/// path is matched case-insensitively, as the route was.
fn strip_prefix_canonically<'a>(full: &'a str, prefix: &str) -> &'a str {
    if full.len() >= prefix.len()
        && full.is_char_boundary(prefix.len())
        && full[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        &full[prefix.len()..]
    } else {
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_uri_comes_from_the_headers_or_the_path() {
        let req = Request::get("/_ferrygate/auth").header("x-original-uri", "/admin?x=1").body(()).unwrap();
        assert_eq!(original_uri(&req, "/_ferrygate/auth"), "/admin?x=1");
        let req = Request::get("/_ferrygate/auth").header("x-forwarded-uri", "/ADMIN").body(()).unwrap();
        assert_eq!(original_uri(&req, "/_ferrygate/auth"), "/ADMIN");
        let req = Request::get("/_ferrygate/auth/admin/users?tab=2").body(()).unwrap();
        assert_eq!(original_uri(&req, "/_ferrygate/auth"), "/admin/users?tab=2");
        let req = Request::get("/_ferrygate/auth").body(()).unwrap();
        assert_eq!(original_uri(&req, "/_ferrygate/auth"), "/");
    }
}
