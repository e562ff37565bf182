//! Hop-by-hop headers (RFC 9110 §7.6.1): those of the standard list, and any
//! a client names in `Connection`.
//!
//! A client's `Connection` can name any header, `X-Ferrygate-User` or
//! `X-Request-Id` included. The names it lists are therefore removed where a
//! request enters, before anything of ours is written
//! ([`strip_connection_listed`]); from then on `Connection` holds only the
//! standard tokens, and the proxy's later [`remove_hop_by_hop`] can no longer
//! remove a header the gateway wrote.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and `proxy-connection`).
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// For header names (always lower case).
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str() == name)
}

/// The tokens of every `Connection` header, trimmed.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// A `Connection` token that names a header of its own (not `close`, not a
/// standard hop-by-hop header).
fn names_other_header(token: &str) -> bool {
    !token.is_empty()
        && !token.eq_ignore_ascii_case("close")
        && !HOP_BY_HOP.iter().any(|h| h.as_str().eq_ignore_ascii_case(token))
}

/// Removes the headers a request's `Connection` names beyond the standard
/// ones, and those names from `Connection`. Usually there are none, and
/// nothing is allocated.
pub fn strip_connection_listed(headers: &mut HeaderMap) {
    if !connection_tokens(headers).any(names_other_header) {
        return;
    }
    let listed: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| names_other_header(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let kept: Vec<&str> = connection_tokens(headers).filter(|t| !t.is_empty() && !names_other_header(t)).collect();
    let kept = (!kept.is_empty()).then(|| HeaderValue::from_str(&kept.join(", ")).ok()).flatten();
    for name in &listed {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if let Some(v) = kept {
        headers.insert(header::CONNECTION, v);
    }
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1 and those `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| is_hop_by_hop(k.as_str())) {
        return;
    }
    strip_connection_listed(headers);
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_standard_and_listed_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::TRAILER, "x-checksum".parse().unwrap());
        h.insert("x-end-to-end", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["trailer", "x-end-to-end"]);
    }

    #[test]
    fn listed_names_go_first_and_the_standard_tokens_stay() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade, X-Ferrygate-User, x-request-id".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-ferrygate-user", "mallory".parse().unwrap());
        h.insert("x-request-id", "client".parse().unwrap());
        strip_connection_listed(&mut h);
        assert_eq!(h[header::CONNECTION], "Upgrade");
        assert!(h.get("x-ferrygate-user").is_none() && h.get("x-request-id").is_none());
        // What is written afterwards survives the proxy's own removal.
        h.insert("x-ferrygate-user", "alice".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h["x-ferrygate-user"], "alice");
        assert!(h.get(header::UPGRADE).is_none());
    }
}
