//! Cross-site request checks for POSTs to routes Ferrygate owns.
//!
//! A browser form post carries `Origin` (or at least `Referer`); its authority
//! must be the request's own authority (`:authority`/`Host`, or the
//! `X-Forwarded-Host` of a trusted proxy), one of the site's hosts, or an
//! origin listed in `allowed_origins`. `Sec-Fetch-Site: cross-site` is refused
//! unless the origin is listed; `Origin: null` is refused. A request with
//! neither header is a non-browser client and passes: CSRF needs a victim's
//! browser, and such clients cannot ride on its cookies.

use std::borrow::Cow;

use http::{header, Extensions, HeaderMap, Uri};
use ipnet::IpNet;

use crate::conn::{self, ClientConn};
use crate::site::Site;

/// The CSRF check of an owned route's POST: whether the request comes from
/// the site's own pages (or an allowed origin), as the module docs say.
pub(crate) fn same_origin(trusted: &[IpNet], site: &Site, uri: &Uri, headers: &HeaderMap, ext: &Extensions) -> bool {
    let conn = ext.get::<ClientConn>();
    let trusted_peer = conn.is_some_and(|c| conn::is_trusted(c.peer.ip(), trusted));
    let https = conn::is_https(conn, headers, trusted);
    origin_allowed(headers, &request_authorities(uri, headers, trusted_peer), site, https)
}

/// The authorities a request was addressed to: the URI's (HTTP/2, absolute
/// form) and `Host`, plus `X-Forwarded-Host` when a trusted proxy relayed it
/// (with its `X-Forwarded-Port` when the host names none: Traefik sends the
/// port apart, nginx's `$host` drops it).
pub(crate) fn request_authorities<'a>(uri: &'a Uri, headers: &'a HeaderMap, trusted_peer: bool) -> Vec<Cow<'a, str>> {
    let mut out: Vec<Cow<'a, str>> = uri.authority().map(|a| Cow::Borrowed(a.as_str())).into_iter().collect();
    out.extend(headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(Cow::Borrowed));
    if trusted_peer {
        let last = |name: &str| {
            headers.get(name).and_then(|h| h.to_str().ok()).and_then(|h| h.rsplit(',').next()).map(str::trim)
        };
        if let Some(host) = last("x-forwarded-host").filter(|h| !h.is_empty()) {
            out.push(Cow::Borrowed(host));
            let named_port = crate::authority::parse(host).is_ok_and(|a| a.host() != a.full);
            if let Some(port) = last("x-forwarded-port").filter(|p| !named_port && p.parse::<u16>().is_ok()) {
                out.push(Cow::Owned(format!("{host}:{port}")));
            }
        }
    }
    out
}

/// Whether a POST with these headers, addressed to `authorities`, may reach
/// one of `site`'s owned routes. `https` says the request is known to have
/// come over HTTPS: then an `http://` origin is another origin, however its
/// host reads.
pub(crate) fn origin_allowed(headers: &HeaderMap, authorities: &[Cow<'_, str>], site: &Site, https: bool) -> bool {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"));
    let Some(claimed) = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)) else {
        return !cross_site;
    };
    let Some(origin) = claimed.to_str().ok().and_then(|v| url::Url::parse(v.trim()).ok()) else {
        return false; // `null`, garbage, or a relative reference
    };
    if !matches!(origin.scheme(), "http" | "https") {
        return false;
    }
    let serialized = origin.origin().ascii_serialization();
    if site.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(&serialized)) {
        return true;
    }
    if cross_site || (https && origin.scheme() != "https") {
        return false;
    }
    let Some(origin_host) = origin.host_str() else { return false };
    let authority = match origin.port() {
        Some(port) => format!("{origin_host}:{port}"),
        None => origin_host.to_owned(),
    };
    authorities.iter().any(|h| h.eq_ignore_ascii_case(&authority) || same_default_port(h, &authority, origin.scheme()))
        || site.hosts.iter().any(|h| h.eq_ignore_ascii_case(&authority))
}

/// `Host: example.com:443` against an `https://example.com` origin.
fn same_default_port(host: &str, authority: &str, scheme: &str) -> bool {
    let default = if scheme == "https" { "443" } else { "80" };
    host.strip_suffix(default).and_then(|h| h.strip_suffix(':')).is_some_and(|h| {
        h.eq_ignore_ascii_case(authority) && crate::authority::parse(h).is_ok_and(|a| a.host() == a.full)
    })
}
