//! One canonical path for every decision Ferrygate makes about a request's
//! path: which owned route it is (login, wizard, home, logout,
//! forgot-password, callback), whether it is protected, which authorization
//! rule covers it.
//!
//! The canonical form is the path an upstream will most likely serve:
//! percent-escapes decoded, `\` read as `/`, `;parameters` dropped, empty and
//! `.` segments removed, `..` resolved, lower-cased, no trailing slash. Matching
//! on anything less precise lets `/LOGIN`, `/login/` or `//landing;x` reach
//! the site past the route that should have answered it. The canonical path is
//! only ever compared, never sent anywhere or used to build a URL.

use std::borrow::Cow;

use crate::authority::{sub_delim, unreserved};

/// The canonical form of `raw` (a request path). Most paths already are
/// canonical and are returned as they are, without allocating.
pub fn canonical(raw: &str) -> Cow<'_, str> {
    if is_canonical(raw) {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(canonical_for_matching(raw))
    }
}

/// Whether `raw` is its own canonical form (checked without allocating).
fn is_canonical(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    if raw == "/" {
        return true;
    }
    bytes.last() != Some(&b'/')
        && !raw.contains("//")
        && !raw.contains("/.")
        // pchar and `/`, without upper case (lowered) and `;` (a segment's
        // parameters are cut) and `%` (decoded).
        && bytes.iter().all(|&b| {
            (unreserved(b) && !b.is_ascii_uppercase())
                || (sub_delim(b) && b != b';')
                || matches!(b, b'/' | b':' | b'@')
        })
}

/// The canonical form, always computed (see the [module docs](self)).
pub fn canonical_for_matching(raw: &str) -> String {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_lowercase()),
        }
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::within;

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
            "\\landing",
            "/Landing/.",
        ] {
            assert_eq!(canonical(raw), "/landing", "{raw}");
        }
        assert_eq!(canonical("/"), "/");
        assert_eq!(canonical(""), "/");
    }

    #[test]
    fn canonical_matching_sees_through_tricks() {
        for raw in ["/admin", "//admin", "/./admin", "/x/../admin", "/%61dmin", "/admin;x", "/ADMIN/", "/x/..%2fadmin"]
        {
            assert!(within(&canonical(raw), "/admin"), "{raw}");
        }
        assert!(!within(&canonical("/administrator"), "/admin"));
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(canonical("/my-portal/quotes/new"), Cow::Borrowed(_)));
        assert!(matches!(canonical("/My-portal"), Cow::Owned(_)));
    }

    proptest::proptest! {
        /// The borrowed fast path and the full computation never disagree.
        #[test]
        fn the_fast_path_agrees_with_the_full_form(raw in "[/a-zA-Z0-9.;%~_\\-]{0,24}") {
            proptest::prop_assert_eq!(canonical(&raw).into_owned(), canonical_for_matching(&raw));
        }

        /// An owned route matches exactly the paths whose canonical form is its own.
        #[test]
        fn owned_route_match_is_canonical_equality(
            raw in "(/|//|/\\./|/x/\\.\\./)?(login|LOGIN|Login|%6cogin|logi|login2|other)(/|;x|/\\.)?",
        ) {
            let routes: std::collections::HashMap<String, ()> = [(canonical("/login").into_owned(), ())].into();
            let matched = routes.contains_key(canonical(&raw).as_ref());
            proptest::prop_assert_eq!(matched, canonical_for_matching(&raw) == canonical_for_matching("/login"));
            let lower = raw.to_ascii_lowercase();
            let stem = lower.trim_start_matches(['/', '.', 'x']).trim_start_matches('/');
            let names_login = stem.starts_with("login") && !stem.starts_with("login2")
                || stem.starts_with("%6cogin");
            proptest::prop_assert_eq!(matched, names_login, "{}", raw);
        }
    }
}
