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
//! ([`crate::decision::decide`]), on the session the session layer resolved: 200 with the identity headers, 401 (or, with
//! `redirect = true`, 302 to the login page), or 403 `forbidden`.

use bytes::Bytes;
use http::header::LOCATION;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::conn::{is_trusted, ClientConn};
use std::sync::Arc;

use crate::decision::{decide, Guard, Resolved, Verdict};
use crate::gate::Gate;
use crate::identity::SignedIn;
use crate::path::BadPath;
use crate::respond;
use crate::session::Carried;
use crate::site::{ForwardAuth, ForwardAuthStyle, Site};

pub(crate) async fn check<B>(gate: &Arc<Gate>, site: &Site, req: Request<B>) -> Response<Full<Bytes>> {
    // The body, if any, is not needed (and need not be shared across the await).
    let mut req = Request::from_parts(req.into_parts().0, ());
    let trusted = req
        .extensions()
        .get::<ClientConn>()
        .is_some_and(|c| is_trusted(c.peer.ip(), &gate.config.server.trusted_proxies));
    if !trusted {
        tracing::warn!(site = %site.name, "forward-auth check from a peer not in trusted_proxies");
        return respond::refused(StatusCode::FORBIDDEN, "forbidden", "forbidden\n");
    }
    let Some(fa) = &site.forward_auth else { return respond::text(StatusCode::NOT_FOUND, "not found\n") };
    let original = match original(&req, fa, gate.config.server.allow_encoded_slashes) {
        Ok(o) => o,
        Err(refused) => {
            tracing::info!(site = %site.name, reason = refused.reason(), "forward-auth check refused");
            return respond::refused(StatusCode::BAD_REQUEST, "bad_request", refused.text());
        }
    };
    let path = crate::path::matching(original.path());
    tracing::trace!(site = %site.name, method = original.method.as_ref().map(http::Method::as_str), path = %path, "forward-auth check");
    // The session, looked up only now: a peer the check does not trust, or a
    // request it cannot read, costs no store read and no token renewal.
    let carried = req.extensions_mut().remove::<Carried>().unwrap_or_default();
    let resolved = gate.resolve(&carried, &site.name).await;
    // The original method picks the rule (without a method source, every
    // rule applies); every path a check asks about needs a session unless a
    // public rule opens it, and a rule narrows it to networks and groups.
    let rule = site.rule(&path, original.method.as_ref()).and_then(|i| site.authorize.get(i));
    let guard = match rule {
        Some(r) if r.public => Guard::Public,
        _ => Guard::Protected { rule, client: gate.rule_client(rule, req.headers(), req.extensions()) },
    };
    match decide(guard, &resolved) {
        Verdict::Allow => {
            let mut res = respond::text(StatusCode::OK, "");
            if let Resolved::Live(s) = resolved {
                // `pass_access_token`: for the proxy to copy (nginx `auth_request_set`,
                // Traefik `authResponseHeaders`), as oauth2-proxy's `Authorization`.
                if let Some(token) = crate::refresh::access_token(site, &s) {
                    token.write(res.headers_mut());
                }
                SignedIn::from(*s).write_headers(res.headers_mut());
                // Every identity header named, empty when unknown: a proxy
                // that copies a missing one as its placeholder's text (Caddy
                // before 2.9) then copies nothing.
                for name in ["x-ferrygate-user-id", "x-ferrygate-org-id", "x-ferrygate-groups"] {
                    res.headers_mut().entry(name).or_insert(HeaderValue::from_static(""));
                }
            }
            res
        }
        Verdict::SignIn if fa.redirect => {
            let mut res = respond::text(StatusCode::FOUND, "");
            if let Ok(v) = HeaderValue::from_str(&site.login_target(&original.uri)) {
                res.headers_mut().insert(LOCATION, v);
            }
            res
        }
        Verdict::SignIn => respond::refused(StatusCode::UNAUTHORIZED, "unauthenticated", "unauthenticated\n"),
        Verdict::Forbidden => respond::refused(StatusCode::FORBIDDEN, "forbidden", "forbidden\n"),
        Verdict::Unavailable => respond::store_unavailable(),
    }
}

/// The original request, as the proxy in front reports it.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    /// The path in normal form (SPEC 2), then the query if any.
    uri: String,
    /// Where the path ends in `uri`.
    path_len: usize,
    /// `X-Original-Method` / `X-Forwarded-Method`, when the source has one.
    method: Option<http::Method>,
}

impl Original {
    fn path(&self) -> &str {
        &self.uri[..self.path_len]
    }
}

/// Why a check's original request cannot be read (400).
#[derive(Debug, PartialEq, Eq)]
enum Unreadable {
    Path(BadPath),
    /// A dot segment: the site may read other segments than the decision's.
    DotSegment,
    /// The method header is no HTTP method (read as none, every rule would apply).
    Method,
    /// `auto`: two sources name different paths or methods.
    Disagree,
    /// The configured style's header is missing.
    Missing(&'static str),
}

impl Unreadable {
    fn reason(&self) -> &'static str {
        match self {
            Unreadable::Path(_) => "the original path is refused",
            Unreadable::DotSegment => "a dot segment in the original path",
            Unreadable::Method => "the original method is not an HTTP method",
            Unreadable::Disagree => "two sources of the original request disagree",
            Unreadable::Missing(_) => "the configured style's header is missing",
        }
    }

    fn text(&self) -> &'static str {
        match self {
            Unreadable::Path(e) => crate::router::bad_path_text(*e),
            Unreadable::DotSegment => "dot segment in the original path\n",
            Unreadable::Method => "the original method (X-Original-Method, X-Forwarded-Method) is not an HTTP method\n",
            Unreadable::Disagree => {
                "the original request's sources disagree (X-Original-URI, X-Forwarded-Uri, the path)\n"
            }
            Unreadable::Missing("x-original-uri") => "X-Original-URI is missing (forward_auth.style = \"nginx\")\n",
            Unreadable::Missing(_) => "X-Forwarded-Uri is missing (forward_auth.style = \"forwarded\")\n",
        }
    }
}

/// One source's original request, before it is normalised.
struct Source<'r> {
    uri: &'r str,
    method: Option<&'r str>,
}

/// The original request from the source `forward_auth.style` names; in
/// `auto`, from the first of `X-Original-URI`, `X-Forwarded-Uri` and the path
/// after the check's own, where every source present must agree (SPEC 2.1).
fn original<B>(req: &Request<B>, fa: &ForwardAuth, allow_encoded_slashes: bool) -> Result<Original, Unreadable> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let nginx = header("x-original-uri").map(|uri| Source { uri, method: header("x-original-method") });
    let forwarded = header("x-forwarded-uri").map(|uri| Source { uri, method: header("x-forwarded-method") });
    // Envoy's path_prefix: the original path follows the check's own.
    let own = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let rest = strip_prefix_canonically(own, &fa.path);
    let in_path = (!rest.split('?').next().unwrap_or_default().trim_start_matches('/').is_empty())
        .then_some(Source { uri: rest, method: None });
    let read = |s: &Source<'_>| normalise(s, allow_encoded_slashes);
    let root = || Original { uri: "/".to_owned(), path_len: 1, method: None };
    match fa.style {
        ForwardAuthStyle::Nginx => read(&nginx.ok_or(Unreadable::Missing("x-original-uri"))?),
        ForwardAuthStyle::Forwarded => read(&forwarded.ok_or(Unreadable::Missing("x-forwarded-uri"))?),
        ForwardAuthStyle::Path => in_path.as_ref().map_or_else(|| Ok(root()), read),
        ForwardAuthStyle::Auto => {
            let mut found: Option<Original> = None;
            for source in [nginx, forwarded, in_path].iter().flatten() {
                let this = read(source)?;
                match &found {
                    None => found = Some(this),
                    Some(first) => {
                        let methods_differ = matches!((&first.method, &this.method), (Some(a), Some(b)) if a != b);
                        if first.path() != this.path() || methods_differ {
                            return Err(Unreadable::Disagree);
                        }
                    }
                }
            }
            Ok(found.unwrap_or_else(root))
        }
    }
}

/// A source's URI in normal form: an absolute URI's path and query (nginx's
/// `$request_uri` is the target as the client sent it), a `#` ending the
/// path, the path normalised as a proxied request's is.
fn normalise(source: &Source<'_>, allow_encoded_slashes: bool) -> Result<Original, Unreadable> {
    let mut uri = source.uri.split('#').next().unwrap_or_default();
    if !uri.starts_with('/') {
        if let Some(after_scheme) = uri.split_once("://").map(|(_, rest)| rest) {
            uri = after_scheme.find(['/', '?']).map_or("/", |i| &after_scheme[i..]);
        }
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    if crate::path::has_dot_segment(path) {
        return Err(Unreadable::DotSegment);
    }
    let path = crate::path::normal(path, allow_encoded_slashes).map_err(Unreadable::Path)?;
    let path_len = path.len();
    let uri = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    let method = source.method.map(|m| http::Method::from_bytes(m.as_bytes())).transpose();
    Ok(Original { uri, path_len, method: method.map_err(|_| Unreadable::Method)? })
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

    fn fa(style: ForwardAuthStyle) -> ForwardAuth {
        ForwardAuth { path: "/_ferrygate/auth".to_owned(), redirect: false, style }
    }

    fn read(req: &Request<()>, style: ForwardAuthStyle) -> Result<String, Unreadable> {
        original(req, &fa(style), false).map(|o| o.uri)
    }

    #[test]
    fn the_original_uri_comes_from_the_headers_or_the_path() {
        let auto = ForwardAuthStyle::Auto;
        let req = Request::get("/_ferrygate/auth").header("x-original-uri", "/admin?x=1").body(()).unwrap();
        assert_eq!(read(&req, auto).as_deref(), Ok("/admin?x=1"));
        let req = Request::get("/_ferrygate/auth").header("x-forwarded-uri", "/ADMIN").body(()).unwrap();
        assert_eq!(read(&req, auto).as_deref(), Ok("/ADMIN"));
        let req = Request::get("/_ferrygate/auth/admin/users?tab=2").body(()).unwrap();
        assert_eq!(read(&req, auto).as_deref(), Ok("/admin/users?tab=2"));
        let req = Request::get("/_ferrygate/auth").body(()).unwrap();
        assert_eq!(read(&req, auto).as_deref(), Ok("/"));
    }

    #[test]
    fn the_original_path_is_judged_in_normal_form() {
        let auto = ForwardAuthStyle::Auto;
        let with = |uri: &str| Request::get("/_ferrygate/auth").header("x-original-uri", uri).body(()).unwrap();
        assert_eq!(read(&with("/admin#frag"), auto).as_deref(), Ok("/admin"));
        assert_eq!(read(&with("//admin/%7Eu?q=1#f"), auto).as_deref(), Ok("/admin/~u?q=1"));
        // The site may not resolve dot segments: the check cannot know what it will read.
        for raw in ["/admin/files/x/../../../public", "/x/%2e%2e/admin", "/admin/.;/x"] {
            assert_eq!(read(&with(raw), auto), Err(Unreadable::DotSegment), "{raw}");
        }
        assert_eq!(read(&with("http://intranet.test/admin?q"), auto).as_deref(), Ok("/admin?q"));
        assert_eq!(read(&with("/admin/users/7%2F..%2F..%2Fx"), auto), Err(Unreadable::Path(BadPath::EncodedSlash)));
        assert_eq!(read(&with("/admin\\x"), auto), Err(Unreadable::Path(BadPath::EncodedSlash)));
    }

    #[test]
    fn two_sources_that_disagree_are_refused_and_a_style_reads_one() {
        let req = Request::get("/_ferrygate/auth")
            .header("x-forwarded-uri", "/admin")
            .header("x-original-uri", "/")
            .body(())
            .unwrap();
        assert_eq!(read(&req, ForwardAuthStyle::Auto), Err(Unreadable::Disagree));
        assert_eq!(read(&req, ForwardAuthStyle::Forwarded).as_deref(), Ok("/admin"));
        assert_eq!(read(&req, ForwardAuthStyle::Nginx).as_deref(), Ok("/"));
        assert_eq!(read(&req, ForwardAuthStyle::Path).as_deref(), Ok("/"));
        // Spellings of one path agree; methods must too.
        let req = Request::get("/_ferrygate/auth/admin")
            .header("x-forwarded-uri", "/%61dmin")
            .header("x-original-uri", "//admin#f")
            .header("x-original-method", "GET")
            .body(())
            .unwrap();
        assert_eq!(read(&req, ForwardAuthStyle::Auto).as_deref(), Ok("/admin"));
        let req = Request::get("/_ferrygate/auth")
            .header("x-forwarded-uri", "/admin")
            .header("x-forwarded-method", "POST")
            .header("x-original-uri", "/admin")
            .header("x-original-method", "GET")
            .body(())
            .unwrap();
        assert_eq!(read(&req, ForwardAuthStyle::Auto), Err(Unreadable::Disagree));
        // A method header that is no method is refused, never read as "no method".
        for bad in ["GE T", "GET,POST", "(GET)"] {
            let req =
                Request::get("/_ferrygate/auth").header("x-original-uri", "/admin").header("x-original-method", bad);
            assert_eq!(read(&req.body(()).unwrap(), ForwardAuthStyle::Nginx), Err(Unreadable::Method), "{bad}");
        }
        let req = Request::get("/_ferrygate/auth/admin").header("x-original-uri", "/").body(()).unwrap();
        assert_eq!(read(&req, ForwardAuthStyle::Auto), Err(Unreadable::Disagree));
        let req = Request::get("/_ferrygate/auth").body(()).unwrap();
        assert_eq!(read(&req, ForwardAuthStyle::Nginx), Err(Unreadable::Missing("x-original-uri")));
        assert_eq!(read(&req, ForwardAuthStyle::Forwarded), Err(Unreadable::Missing("x-forwarded-uri")));
    }
}
