//! Cross-site request checks for POSTs to routes Ferrygate owns.
//!
//! A browser form post carries `Origin` (or at least `Referer`); its authority
//! must be the request's own Host, one of the site's hosts, or an origin listed
//! in `allowed_origins`. `Sec-Fetch-Site: cross-site` and `Origin: null` are
//! refused. A request with neither header is a non-browser client and passes:
//! CSRF needs a victim's browser, and such clients cannot ride on its cookies.

use http::{header, HeaderMap};

use crate::config::{strip_port, Site};

/// Whether a POST with these headers (and `host`, the request's authority) may
/// reach one of `site`'s owned routes.
pub fn origin_allowed(headers: &HeaderMap, host: Option<&str>, site: &Site) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"))
    {
        return false;
    }
    let claimed = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER));
    let Some(claimed) = claimed else { return true };
    let Some(origin) = claimed.to_str().ok().and_then(|v| url::Url::parse(v.trim()).ok()) else {
        return false; // `null`, garbage, or a relative reference
    };
    if !matches!(origin.scheme(), "http" | "https") {
        return false;
    }
    let Some(origin_host) = origin.host_str() else { return false };
    let authority = match origin.port() {
        Some(port) => format!("{origin_host}:{port}"),
        None => origin_host.to_owned(),
    };
    if host.is_some_and(|h| h.eq_ignore_ascii_case(&authority) || same_default_port(h, &authority, origin.scheme())) {
        return true;
    }
    if site.hosts.iter().any(|h| h.eq_ignore_ascii_case(&authority)) {
        return true;
    }
    let serialized = origin.origin().ascii_serialization();
    site.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(&serialized))
}

/// `Host: example.com:443` against an `https://example.com` origin.
fn same_default_port(host: &str, authority: &str, scheme: &str) -> bool {
    let default = if scheme == "https" { "443" } else { "80" };
    host.strip_suffix(default)
        .and_then(|h| h.strip_suffix(':'))
        .is_some_and(|h| h.eq_ignore_ascii_case(authority) && strip_port(h) == h)
}
