//! Post-login destinations: parse, normalise, then allow-list.
//!
//! A destination is only ever a path (plus query) inside one of the site's
//! allowed prefixes. Everything that could make a browser leave that prefix is
//! refused outright rather than repaired: absolute and scheme-relative URLs,
//! backslashes, control characters and whitespace (raw or percent-encoded),
//! encoded separators and dots, and dot segments that climb out of the prefix.
//! Callers replace a refused destination by the site's default.

use std::fmt;

/// Longest destination accepted, in bytes.
pub const MAX_LEN: usize = 2048;

/// Why a destination was refused; for the log, never shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Validates `raw` against the allowed path prefixes (segment-wise) and returns
/// the normalised destination: dot segments resolved, non-ASCII characters
/// percent-encoded, so the result is plain ASCII that fits any header.
pub fn validate(raw: &str, allowed: &[String]) -> Result<String, Refused> {
    if raw.len() > MAX_LEN {
        return Err(Refused("too long"));
    }
    if raw.chars().any(invisible) {
        return Err(Refused("control character or whitespace"));
    }
    if raw.contains('\\') {
        return Err(Refused("backslash"));
    }
    if raw.contains('#') {
        return Err(Refused("fragment"));
    }
    if !raw.starts_with('/') || raw.starts_with("//") {
        return Err(Refused("not a path on this host"));
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    // `..;/` climbs on Java servers (Tomcat, Jetty, Spring): no path parameters at all.
    if path.contains(';') {
        return Err(Refused("path parameter"));
    }
    check_escapes(path, PathEscapes)?;
    if let Some(q) = query {
        check_escapes(q, QueryEscapes)?;
    }
    // What the escapes stand for must be valid UTF-8 (no overlong `%c0%af` for
    // "/") and as clean as the raw text.
    let decoded =
        percent_encoding::percent_decode_str(path).decode_utf8().map_err(|_| Refused("invalid UTF-8 escape"))?;
    // An encoded plain space ("a%20b") is a legitimate file name; nothing else invisible is.
    if decoded.chars().any(|c| c != ' ' && invisible(c)) {
        return Err(Refused("encoded invisible character"));
    }
    let path = normalise(path)?;
    if !allowed.iter().any(|prefix| crate::path::under(&path, prefix)) {
        return Err(Refused("outside the allowed prefixes"));
    }
    let mut out = String::with_capacity(raw.len() + 8);
    encode_non_ascii(&path, &mut out);
    if let Some(q) = query {
        out.push('?');
        encode_non_ascii(q, &mut out);
    }
    // Encoding can triple non-ASCII text: the bound holds for what we hand on, too.
    if out.len() > MAX_LEN {
        return Err(Refused("too long"));
    }
    Ok(out)
}

/// Control characters, whitespace and invisible formatting characters
/// (zero-width spaces, joiners, direction marks, the BOM): never in a destination.
fn invisible(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

#[derive(Clone, Copy)]
struct PathEscapes;
#[derive(Clone, Copy)]
struct QueryEscapes;

trait EscapeRule: Copy {
    fn refuse(self, byte: u8) -> Option<&'static str>;
}

impl EscapeRule for PathEscapes {
    fn refuse(self, byte: u8) -> Option<&'static str> {
        match byte {
            b'/' | b'\\' => Some("encoded slash or backslash"),
            b';' => Some("encoded path parameter"),
            b'.' => Some("encoded dot"),
            b'%' => Some("double encoding"),
            b if b < 0x20 || b == 0x7f => Some("encoded control character"),
            _ => None,
        }
    }
}

impl EscapeRule for QueryEscapes {
    fn refuse(self, byte: u8) -> Option<&'static str> {
        match byte {
            b if b < 0x20 || b == 0x7f => Some("encoded control character"),
            _ => None,
        }
    }
}

fn check_escapes(s: &str, rule: impl EscapeRule) -> Result<(), Refused> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(Refused("malformed percent-escape"))?;
            if let Some(why) = rule.refuse(byte) {
                return Err(Refused(why));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn normalise(path: &str) -> Result<String, Refused> {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path[1..].split('/').peekable();
    let mut trailing_slash = false;
    while let Some(seg) = parts.next() {
        let last = parts.peek().is_none();
        match seg {
            "." | ".." if last => {
                if seg == ".." && segments.pop().is_none() {
                    return Err(Refused("dot segments climb above the root"));
                }
                trailing_slash = true;
            }
            "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(Refused("dot segments climb above the root"));
                }
            }
            "" if last => trailing_slash = !segments.is_empty(),
            "" => return Err(Refused("empty path segment")),
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

fn encode_non_ascii(s: &str, out: &mut String) {
    use std::fmt::Write;
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["/my-portal".to_owned()]
    }

    #[test]
    fn keeps_legitimate_destinations() {
        for (input, want) in [
            ("/my-portal", "/my-portal"),
            ("/my-portal/", "/my-portal/"),
            ("/my-portal/quotations", "/my-portal/quotations"),
            (
                "/my-portal/quotations/new?origin=NLRTM&product=fcl",
                "/my-portal/quotations/new?origin=NLRTM&product=fcl",
            ),
            ("/my-portal/a%20b", "/my-portal/a%20b"),
            ("/my-portal/x/../y", "/my-portal/y"),
            ("/my-portal/./y", "/my-portal/y"),
            ("/my-portal/café", "/my-portal/caf%C3%A9"),
            ("/my-portal?next=%2Fa", "/my-portal?next=%2Fa"),
        ] {
            assert_eq!(validate(input, &allowed()).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_attacks() {
        for input in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/my-portal\\..\\..\\evil",
            "/my-portalx",
            "/my-portal/../admin",
            "/my-portal/%2e%2e/admin",
            "/my-portal/%2f%2fevil",
            "/my-portal/%5cevil",
            "/my-portal/%252f",
            "/my-portal/\tx",
            "/my-portal/\nx",
            "/my-portal/%0ax",
            "/my-portal/%00",
            "/my-portal/ x",
            "javascript:alert(1)",
            "data:text/html,x",
            "my-portal",
            "",
            "/my-portal/%zz",
            "/my-portal#x",
            "/../my-portal",
            "/my-portal//evil",
            "/my-portal/..;/admin",
            "/my-portal/x;jsessionid=1",
            "/my-portal/%3b",
        ] {
            assert!(validate(input, &allowed()).is_err(), "{input:?} was accepted");
        }
        let long = format!("/my-portal/{}", "a".repeat(MAX_LEN));
        assert_eq!(validate(&long, &allowed()), Err(Refused("too long")));
    }

    proptest::proptest! {
        #[test]
        fn whatever_is_accepted_is_inside_ascii_and_stable(raw in "\\PC{0,64}|/my-portal[/a-z.%0-9?&=\\\\;#@ -]{0,40}") {
            if let Ok(d) = validate(&raw, &allowed()) {
                proptest::prop_assert!(crate::path::under(d.split('?').next().unwrap_or(""), "/my-portal"), "{}", d);
                proptest::prop_assert!(d.bytes().all(|b| (0x21..0x7f).contains(&b)), "{:?}", d);
                proptest::prop_assert_eq!(validate(&d, &allowed()), Ok(d.clone()));
            }
        }
    }
}
