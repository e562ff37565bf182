//! One path for every decision Ferrygate makes about a request, and the same
//! path for the site (SPEC 2).
//!
//! Two forms:
//! - the **normal form** ([`normal`]) is what the site receives: escapes of
//!   unreserved characters decoded, every other escape kept with upper-case
//!   hex, `//` merged, then dot segments (`.`, `..`, `%2E` in any case)
//!   resolved as RFC 3986 5.2.4 does (`/a/b/..` is `/a/`), a `#` and what
//!   follows it dropped. An encoded `/` or `\` (`%2F`, `%5C`) or a raw `\` is
//!   refused ([`BadPath`], 400) unless `server.allow_encoded_slashes`, when it
//!   is kept encoded and is an ordinary character. A dot segment with
//!   parameters (`..;x`, which Tomcat-style servers resolve as `..`) is
//!   refused too. Nothing an upstream router may decode (an escape) or resolve
//!   (a dot segment) is left in it, so no upstream can read it as other
//!   segments than the ones decided on;
//! - the **matching form** ([`matching`], [`canonical`]) is the normal form
//!   compared: `;parameters` dropped, lower-cased, no empty segment and no
//!   trailing slash, so `/LOGIN`, `/login/` or `//landing;x` are the owned
//!   route they name and never a way round it. It is only ever compared,
//!   never sent anywhere.

use std::borrow::Cow;

use crate::authority::unreserved;

/// Why a path is refused (400, SPEC 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// `%2F`, `%5C` or a raw `\`, without `server.allow_encoded_slashes`.
    #[error("an encoded slash or a backslash in the path")]
    EncodedSlash,
    /// `%` not followed by two hex digits.
    #[error("a malformed percent-escape in the path")]
    BadEscape,
    /// `.;x` or `..;x`: a dot segment some servers resolve and others do not.
    #[error("a dot segment with parameters in the path")]
    DotParameters,
}

/// The normal form of `raw` (a request path; see the [module docs](self)).
/// Most paths already are normal and are returned as they are, without
/// allocating.
pub fn normal(raw: &str, allow_encoded_slashes: bool) -> Result<Cow<'_, str>, BadPath> {
    let raw = raw.split('#').next().unwrap_or_default();
    if raw == "*" || is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize(raw, allow_encoded_slashes).map(Cow::Owned)
}

/// The normal form, always computed.
fn normalize(raw: &str, allow_encoded_slashes: bool) -> Result<String, BadPath> {
    // Escapes first: only unreserved characters are decoded, so no new `/`,
    // `%` or `;` can appear; `%2E` becomes a `.` that the dot pass sees.
    let mut decoded = String::with_capacity(raw.len() + 1);
    if !raw.starts_with('/') && !raw.starts_with('\\') {
        decoded.push('/');
    }
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(hi), Some(lo)) =
                    (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
                else {
                    return Err(BadPath::BadEscape);
                };
                let c = (hi * 16 + lo) as u8;
                if unreserved(c) {
                    decoded.push(c as char);
                } else if matches!(c, b'/' | b'\\') && !allow_encoded_slashes {
                    return Err(BadPath::EncodedSlash);
                } else {
                    decoded.push('%');
                    decoded.push(char::from_digit(hi, 16).unwrap_or('0').to_ascii_uppercase());
                    decoded.push(char::from_digit(lo, 16).unwrap_or('0').to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
            b'\\' if !allow_encoded_slashes => return Err(BadPath::EncodedSlash),
            b'\\' => decoded.push_str("%5C"),
            _ => {
                // Whole characters: a `str` is UTF-8 (a header may carry any).
                let len = utf8_len(b);
                decoded.push_str(&raw[i..(i + len).min(raw.len())]);
                i += len;
                continue;
            }
        }
        i += 1;
    }
    // Then `//` merged, then the dot segments (RFC 3986 5.2.4).
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded[1..].split('/').filter(|s| !s.is_empty()).peekable();
    let mut trailing_slash = decoded.ends_with('/') && decoded.len() > 1;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." | ".." => {
                if seg == ".." {
                    out.pop();
                }
                if last {
                    trailing_slash = true;
                }
            }
            s if is_dot(s.split(';').next().unwrap_or_default()) => return Err(BadPath::DotParameters),
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        path.push('/');
    }
    Ok(path)
}

fn is_dot(s: &str) -> bool {
    s == "." || s == ".."
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Whether `raw` is its own normal form (checked without allocating): no
/// escape, no `\`, no empty segment but a trailing one, no dot segment (with
/// or without parameters).
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else { return false };
    !raw.bytes().any(|b| matches!(b, b'%' | b'\\'))
        && !raw.contains("//")
        && rest.split('/').all(|seg| !is_dot(seg.split(';').next().unwrap_or_default()))
}

/// Whether `raw` holds a dot segment (`.`, `..`, `%2E` in any case, with or
/// without `;parameters`). A forward-auth check refuses one: Ferrygate does
/// not forward that request, so it cannot make the site see the path it
/// decided on, and a site that does not resolve dot segments would read
/// other segments than the decision (browsers resolve them before sending).
pub fn has_dot_segment(raw: &str) -> bool {
    raw.split(['/', '\\']).any(|seg| {
        let seg = seg.split(';').next().unwrap_or_default();
        seg.len() <= 6 && is_dot(&seg.replace("%2e", ".").replace("%2E", "."))
    })
}

/// The matching form of a path already in [`normal`] form.
pub fn matching(normal: &str) -> Cow<'_, str> {
    if is_matching(normal) {
        return Cow::Borrowed(normal);
    }
    let mut out = String::with_capacity(normal.len());
    for seg in normal.split('/') {
        let seg = seg.split(';').next().unwrap_or_default();
        if !seg.is_empty() {
            out.push('/');
            out.extend(seg.chars().flat_map(char::to_lowercase));
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Whether a normal path is its own matching form: no upper case, no `;`,
/// no trailing slash.
fn is_matching(normal: &str) -> bool {
    normal == "/"
        || (normal.starts_with('/')
            && !normal.ends_with('/')
            && normal.bytes().all(|b| b != b';' && !b.is_ascii_uppercase() && b.is_ascii()))
}

/// The matching form of any path, as configured paths and tests write them
/// (an encoded slash is an ordinary character here; a path that is no valid
/// path at all is compared as it is, lower-cased).
pub fn canonical(raw: &str) -> Cow<'_, str> {
    match normal(raw, true) {
        Ok(Cow::Borrowed(n)) => matching(n),
        Ok(Cow::Owned(n)) => Cow::Owned(matching(&n).into_owned()),
        Err(_) => Cow::Owned(raw.to_lowercase()),
    }
}

/// Whether `path` (already normalised) lies inside `prefix`, whole segments only:
/// `/my-portal` allows `/my-portal` and `/my-portal/x`, never `/my-portalx`.
pub fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &str) -> Result<String, BadPath> {
        normal(raw, false).map(Cow::into_owned)
    }

    #[test]
    fn spellings_of_one_path_are_one_path() {
        for raw in [
            "/landing",
            "/landing/",
            "/LANDING",
            "//landing",
            "/./landing",
            "/%6canding",
            "/landing;x",
            "/x/../landing",
            "/Landing/.",
            "/x/%2e%2E/landing",
        ] {
            assert_eq!(canonical(raw), "/landing", "{raw}");
        }
        assert_eq!(canonical("/"), "/");
        assert_eq!(canonical(""), "/");
    }

    #[test]
    fn the_normal_form_is_what_rfc_3986_resolves() {
        for (raw, want) in [
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("//a//b/", "/a/b/"),
            ("/a/%2e%2E/b", "/b"),
            ("/%7Euser/%41", "/~user/A"),
            ("/a%3bb/%c3%a9", "/a%3Bb/%C3%A9"),
            ("/app#frag", "/app"),
            ("/a;x/b", "/a;x/b"),
            ("a", "/a"),
            ("", "/"),
            ("/Mixed/Case/", "/Mixed/Case/"),
        ] {
            assert_eq!(n(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn encoded_separators_are_refused_or_kept_as_characters() {
        for raw in ["/app/reports/..%2F..%2F..%2Fpublic", "/admin/users/7%2f..", "/admin/x%5C..%5Cy", "/a\\b"] {
            assert_eq!(n(raw), Err(BadPath::EncodedSlash), "{raw}");
            // Allowed: kept encoded (upper-case hex), an ordinary character.
            let kept = normal(raw, true).unwrap();
            assert!(!kept.contains('\\') && !kept.contains("%2f") && !kept.contains("%5c"), "{kept}");
        }
        assert_eq!(normal("/admin/users/7%2f..%2F..%2Fx", true).unwrap(), "/admin/users/7%2F..%2F..%2Fx");
        assert!(under(&canonical("/admin/users/7%2F..%2F..%2Fx"), "/admin"));
        assert_eq!(normal("/a\\b", true).unwrap(), "/a%5Cb");
        assert_eq!(n("/a%zz"), Err(BadPath::BadEscape));
        assert_eq!(n("/a%2"), Err(BadPath::BadEscape));
        assert_eq!(n("/public/..;/admin"), Err(BadPath::DotParameters));
        assert_eq!(n("/public/%2e%2e;x/admin"), Err(BadPath::DotParameters));
        assert_eq!(n("/public/.;x/admin"), Err(BadPath::DotParameters));
    }

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        for raw in ["/a/../b", "/a/./b", "/a/%2e%2E/b", "/a/%2E", "/..;x/a", "/a\\..\\b", "/a/.."] {
            assert!(has_dot_segment(raw), "{raw}");
        }
        for raw in ["/a/b", "/a/...", "/a/.b/c", "/a/%2e%2e%2e", "/", "/a/b."] {
            assert!(!has_dot_segment(raw), "{raw}");
        }
    }

    #[test]
    fn canonical_matching_sees_through_tricks() {
        for raw in
            ["/admin", "//admin", "/./admin", "/x/../admin", "/%61dmin", "/admin;x", "/ADMIN/", "/x/%2e%2e/admin"]
        {
            assert!(under(&canonical(raw), "/admin"), "{raw}");
        }
        assert!(!under(&canonical("/administrator"), "/admin"));
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normal("/my-portal/quotes/new", false), Ok(Cow::Borrowed(_))));
        assert!(matches!(normal("/my-portal/", false), Ok(Cow::Borrowed(_))));
        assert!(matches!(normal("/a;b/c", false), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonical("/my-portal/quotes/new"), Cow::Borrowed(_)));
        assert!(matches!(canonical("/My-portal"), Cow::Owned(_)));
    }

    /// How a router that decodes every escape and resolves dot segments
    /// (Express, many frameworks) reads a path: its segments, lower-cased,
    /// `;parameters` dropped (as Tomcat does), empty ones skipped.
    fn read_by_a_lenient_upstream(path: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for seg in path.split(['/', '\\']) {
            let seg = seg.split(';').next().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy().to_lowercase();
            match decoded.as_str() {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_owned()),
            }
        }
        out
    }

    fn segments(matching: &str) -> Vec<String> {
        matching.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    proptest::proptest! {
        /// The borrowed fast path and the full computation never disagree.
        #[test]
        fn the_fast_path_agrees_with_the_full_form(raw in "[/a-zA-Z0-9.;%~_\\-]{0,24}") {
            if is_normal(&raw) {
                proptest::prop_assert_eq!(normalize(&raw, false), Ok(raw.clone()));
            }
            if let Ok(n) = normal(&raw, false) {
                proptest::prop_assert_eq!(matching(&n).into_owned(), canonical(&raw).into_owned());
            }
        }

        /// What the site receives is what was decided on: the normal form is
        /// its own normal form, and an upstream that decodes and resolves
        /// everything reads exactly the segments the decision matched — with
        /// encoded slashes refused, or kept as characters when allowed.
        #[test]
        fn the_site_reads_the_segments_decided_on(
            raw in "(/|//|/\\./|/\\.\\./|/%2[eE]|/%2[eE]%2[eE]|/%2[fF]|/%5[cC]|\\\\|/[aA]dmin|/x|;p|/%41|/\\.\\.;|#f){0,8}",
        ) {
            match normal(&raw, false) {
                Ok(n) => {
                    proptest::prop_assert_eq!(normal(&n, false).unwrap(), n.clone());
                    proptest::prop_assert_eq!(read_by_a_lenient_upstream(&n), segments(&matching(&n)));
                    proptest::prop_assert!(!n.contains('#'));
                }
                Err(e) => {
                    let lower = raw.split('#').next().unwrap().to_ascii_lowercase();
                    let refused = lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') || lower.contains(";");
                    proptest::prop_assert!(refused, "{raw}: {e}");
                }
            }
            if let Ok(n) = normal(&raw, true) {
                proptest::prop_assert_eq!(normal(&n, true).unwrap(), n.clone());
                proptest::prop_assert!(!n.contains('\\'));
                // An encoded slash is one character of one segment, for both.
                let decided = segments(&matching(&n));
                let upstream: Vec<String> = n.split('/').filter(|s| !s.is_empty())
                    .map(|s| s.split(';').next().unwrap_or_default().to_lowercase()).filter(|s| !s.is_empty()).collect();
                proptest::prop_assert_eq!(upstream, decided);
            }
        }

        /// An owned route matches exactly the paths whose canonical form is its own.
        #[test]
        fn owned_route_match_is_canonical_equality(
            raw in "(/|//|/\\./|/x/\\.\\./)?(login|LOGIN|Login|%6cogin|logi|login2|other)(/|;x|/\\.)?",
        ) {
            let routes: std::collections::HashMap<String, ()> = [(canonical("/login").into_owned(), ())].into();
            let matched = routes.contains_key(canonical(&raw).as_ref());
            let lower = raw.to_ascii_lowercase();
            let stem = lower.trim_start_matches(['/', '.', 'x']).trim_start_matches('/');
            let names_login = stem.starts_with("login") && !stem.starts_with("login2")
                || stem.starts_with("%6cogin");
            proptest::prop_assert_eq!(matched, names_login, "{}", raw);
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/my-portal", "/my-portal"));
        assert!(under("/my-portal/x", "/my-portal/"));
        assert!(!under("/my-portalx", "/my-portal"));
        assert!(under("/anything", "/"));
    }
}
