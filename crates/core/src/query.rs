//! Query strings of the redirects Ferrygate builds: every value percent-encoded
//! as a query component (what JavaScript's `encodeURIComponent` does), so no
//! value can add a parameter or end the query.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// `value` encoded as a query component (space as `%20`).
pub fn component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// `base` with `pairs` appended to its query (`?` or `&` as needed).
pub fn append(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(base.len() + pairs.iter().map(|(k, v)| k.len() + v.len() * 3 + 2).sum::<usize>());
    out.push_str(base);
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (name, value) in pairs {
        out.push(sep);
        out.push_str(&component(name));
        out.push('=');
        out.push_str(&component(value));
        sep = '&';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_delimiter() {
        assert_eq!(component("/a?b=c&d=e f+g%#"), "%2Fa%3Fb%3Dc%26d%3De%20f%2Bg%25%23");
        assert_eq!(append("https://p.example/x", &[("a", "1"), ("b", "2 3")]), "https://p.example/x?a=1&b=2%203");
        assert_eq!(append("https://p.example/x?k=v", &[("a", "é")]), "https://p.example/x?k=v&a=%C3%A9");
    }
}
