//! The request's authority, parsed once: the site is chosen by it and the site
//! hears it, so routing and forwarding can never disagree about the host.
//!
//! Where it comes from (RFC 9112 §3.2.2): the absolute-form target's or h2's
//! `:authority`, else `Host`. How it is read: lower-cased, one trailing dot
//! removed, the port set aside for matching. What is refused (400): an empty
//! host, an empty label (`a..b`, `a..`), two ports, a port that is not a
//! number, white space, characters outside RFC 3986's `reg-name`, and
//! two `Host` headers. Without that, `intranet.test.:8080` or
//! `intranet.test:80:80` fell through to the default site while the raw text
//! went upstream, where a name-based virtual host served the protected site.

use std::borrow::Cow;

use http::header::HOST;
use http::{HeaderValue, Request};

/// A request's authority, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority<'a> {
    /// `host[:port]` as the site hears it: lower-cased, no trailing dot.
    pub full: Cow<'a, str>,
    /// Length of the host part of `full` (the part sites are matched by).
    host_len: usize,
}

impl Authority<'_> {
    /// The host, without its port: what `sites.hosts` is matched against.
    pub fn host(&self) -> &str {
        &self.full[..self.host_len]
    }

    /// Whether the normalised form differs from what the client sent.
    pub fn changed(&self) -> bool {
        matches!(self.full, Cow::Owned(_))
    }
}

/// The authority is not a valid host (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed authority: {0}")]
pub struct Malformed(pub &'static str);

/// The request's authority: `Ok(None)` when it names none (HTTP/1.0 without
/// `Host`), which selects the default site.
pub fn of_request<B>(req: &Request<B>) -> Result<Option<Authority<'_>>, Malformed> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(Malformed("two Host headers"));
    }
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => match first {
            Some(v) => v.to_str().map_err(|_| Malformed("not ASCII"))?,
            None => return Ok(None),
        },
    };
    parse(raw).map(Some)
}

/// Parses `host[:port]` (an IPv6 literal in brackets included).
pub fn parse(raw: &str) -> Result<Authority<'_>, Malformed> {
    let (host, port) = split_port(raw)?;
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
            return Err(Malformed("port"));
        }
    }
    let host = if host.starts_with('[') {
        check_ip_literal(host)?;
        host
    } else {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err(Malformed("empty host"));
        }
        if host.split('.').any(str::is_empty) {
            return Err(Malformed("empty label"));
        }
        if !host.bytes().all(reg_name_byte) {
            return Err(Malformed("character outside RFC 3986"));
        }
        host
    };
    let port = port.filter(|p| !p.is_empty());
    let canonical_len = host.len() + port.map_or(0, |p| p.len() + 1);
    let unchanged = canonical_len == raw.len() && !host.bytes().any(|b| b.is_ascii_uppercase());
    if unchanged {
        return Ok(Authority { full: Cow::Borrowed(raw), host_len: host.len() });
    }
    let mut full = host.to_ascii_lowercase();
    if let Some(p) = port {
        full.push(':');
        full.push_str(p);
    }
    Ok(Authority { full: Cow::Owned(full), host_len: host.len() })
}

/// `(host, port)`; the port is `Some("")` for a trailing colon.
fn split_port(raw: &str) -> Result<(&str, Option<&str>), Malformed> {
    if raw.starts_with('[') {
        let end = raw.find(']').ok_or(Malformed("unclosed IPv6 literal"))?;
        let (host, rest) = raw.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(Malformed("text after an IPv6 literal")),
        };
    }
    match raw.split_once(':') {
        Some((_, port)) if port.contains(':') => Err(Malformed("two ports")),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((raw, None)),
    }
}

fn check_ip_literal(host: &str) -> Result<(), Malformed> {
    let inner = &host[1..host.len() - 1];
    inner.parse::<std::net::Ipv6Addr>().map(|_| ()).map_err(|_| Malformed("IPv6 literal"))
}

/// RFC 3986 `reg-name`: unreserved, sub-delims and `%` of pct-encoded.
fn reg_name_byte(b: u8) -> bool {
    unreserved(b) || sub_delim(b) || b == b'%'
}

/// RFC 3986 `unreserved`.
pub(crate) fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `sub-delims`.
pub(crate) fn sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

impl Authority<'_> {
    /// `full` as a `Host` header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.full).unwrap_or_else(|_| unreachable!("checked to be RFC 3986 characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (String, String) {
        let a = parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        (a.host().to_owned(), a.full.into_owned())
    }

    #[test]
    fn spellings_of_one_host_are_one_host() {
        for raw in ["intranet.test", "INTRANET.test", "intranet.test.", "intranet.test:", "intranet.test.:"] {
            assert_eq!(ok(raw), ("intranet.test".into(), "intranet.test".into()), "{raw}");
        }
        assert_eq!(ok("intranet.test.:8080"), ("intranet.test".into(), "intranet.test:8080".into()));
        assert_eq!(ok("Intranet.Test:443"), ("intranet.test".into(), "intranet.test:443".into()));
        assert_eq!(ok("[::1]:8080"), ("[::1]".into(), "[::1]:8080".into()));
        assert_eq!(ok("127.0.0.1:80"), ("127.0.0.1".into(), "127.0.0.1:80".into()));
    }

    #[test]
    fn a_canonical_authority_is_borrowed() {
        let a = parse("www.acme.example:8080").unwrap();
        assert!(!a.changed());
        assert!(parse("www.acme.example.:8080").unwrap().changed());
    }

    #[test]
    fn malformed_authorities_are_refused() {
        for raw in [
            "",
            ":80",
            ".",
            "intranet.test:80:80",
            "intranet.test..",
            "a..b",
            "intranet test",
            "intranet.test:8o",
            "intranet.test:99999",
            "intra\"net",
            "intra/net",
            "user@intranet.test",
            "[::1",
            "[nope]",
            "[::1]x",
        ] {
            assert!(parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn the_uri_authority_wins_and_two_hosts_are_refused() {
        let req = Request::get("http://Public.Example.:80/x").header(HOST, "protected.example").body(()).unwrap();
        assert_eq!(of_request(&req).unwrap().unwrap().full, "public.example:80");
        let mut req = Request::get("/x").body(()).unwrap();
        assert_eq!(of_request(&req).unwrap(), None);
        req.headers_mut().append(HOST, HeaderValue::from_static("a.example"));
        req.headers_mut().append(HOST, HeaderValue::from_static("b.example"));
        assert!(of_request(&req).is_err());
    }

    proptest::proptest! {
        #[test]
        fn a_parsed_authority_parses_to_itself(raw in "[a-zA-Z0-9.:\\-\\[\\]]{0,24}") {
            if let Ok(a) = parse(&raw) {
                let again = parse(&a.full).unwrap();
                proptest::prop_assert_eq!(again.full.as_ref(), a.full.as_ref());
                proptest::prop_assert_eq!(again.host(), a.host());
                proptest::prop_assert!(!a.host().ends_with('.'));
                proptest::prop_assert!(!a.host().bytes().any(|b| b.is_ascii_uppercase()));
            }
        }
    }
}
