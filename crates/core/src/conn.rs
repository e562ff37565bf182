//! Who is on the other end of a request: the TCP peer, whether it came over
//! TLS, and what a trusted proxy in front of us says about the real client.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Connection facts a listener records on every request (as an extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Whether `ip` is one of `trusted`.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address: the peer, or, when the peer is a trusted proxy, the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(conn: Option<&ClientConn>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(conn?.peer.ip());
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok().map(canonical))
        .collect();
    Some(
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !is_trusted(*ip, trusted))
            .or(forwarded.first().copied())
            .unwrap_or(peer),
    )
}

/// The client's address for an authorization rule's `networks` (spec 2.2):
/// the peer's, or, from a peer in `trusted_proxies`, the right-most
/// `X-Forwarded-For` address that is not itself a trusted proxy. Stricter
/// than [`client_ip`] (which only keys rate limits): a hop that does not
/// read as an address (`1.2.3.4:5678`, `unknown`) ends the walk with no
/// address rather than skipping to what the client wrote to its left, and
/// a chain of trusted proxies only is no address either — `None` is in no
/// network.
pub fn rule_client_ip(conn: Option<&ClientConn>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(conn?.peer.ip());
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.into_iter().rev() {
        let ip = canonical(hop.trim().parse::<IpAddr>().ok()?);
        if !is_trusted(ip, trusted) {
            return Some(ip);
        }
    }
    None
}

/// Whether the client's request arrived over HTTPS: our own TLS, or a trusted
/// proxy's `X-Forwarded-Proto: https`.
pub fn is_https(conn: Option<&ClientConn>, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    match conn {
        Some(c) if c.tls => true,
        // The nearest trusted hop wrote the last value; earlier ones may be the client's.
        Some(c) if is_trusted(c.peer.ip(), trusted) => headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")),
        _ => false,
    }
}

/// IPv4-mapped IPv6 addresses as plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: &str) -> ClientConn {
        ClientConn { peer: SocketAddr::new(peer.parse().unwrap(), 1234), tls: false }
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(Some(&conn("203.0.113.9")), &xff("1.2.3.4"), &trusted);
        assert_eq!(ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn trusted_peer_passes_the_rightmost_untrusted_address() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(Some(&conn("10.0.0.1")), &xff("6.6.6.6, 198.51.100.7, 10.0.0.2"), &trusted);
        assert_eq!(ip, Some("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn a_rules_client_is_never_one_a_client_wrote_past_an_unreadable_hop() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |peer: &str, v: Option<&str>| {
            rule_client_ip(Some(&conn(peer)), &v.map_or_else(HeaderMap::new, xff), &trusted).map(|i| i.to_string())
        };
        // An untrusted peer's own X-Forwarded-For is never read.
        assert_eq!(ip("203.0.113.9", Some("10.1.2.3")).as_deref(), Some("203.0.113.9"));
        assert_eq!(ip("10.0.0.1", Some("6.6.6.6, 198.51.100.7, 10.0.0.2")).as_deref(), Some("198.51.100.7"));
        // A hop with a port (or `unknown`) ends the walk: what lies left of it is the client's own text.
        assert_eq!(ip("10.0.0.1", Some("10.9.9.9, 198.51.100.7:5555")), None);
        assert_eq!(ip("10.0.0.1", Some("10.9.9.9, unknown")), None);
        // Trusted proxies only, or no header: no address.
        assert_eq!(ip("10.0.0.1", Some("10.0.0.3, 10.0.0.2")), None);
        assert_eq!(ip("10.0.0.1", None), None);
        // The rate limiter's reading stays lenient.
        let lenient = client_ip(Some(&conn("10.0.0.1")), &xff("10.9.9.9, 198.51.100.7:5555"), &trusted);
        assert_eq!(lenient, Some("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn forwarded_proto_only_from_trusted_peers() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(is_https(Some(&conn("127.0.0.1")), &h, &trusted));
        assert!(!is_https(Some(&conn("192.0.2.1")), &h, &trusted));
        assert!(is_https(Some(&ClientConn { tls: true, ..conn("192.0.2.1") }), &HeaderMap::new(), &trusted));
        // An appending proxy leaves the client's claim first: only the last value counts.
        h.insert("x-forwarded-proto", "https, http".parse().unwrap());
        assert!(!is_https(Some(&conn("127.0.0.1")), &h, &trusted));
    }
}
