//! The request headers a login POST is judged by. The core's body parser is
//! private, so this target fuzzes what is public and header-driven: the answer
//! mode (`ferrygate_core::respond::AnswerMode::of`, JSON or browser) and the
//! removal of client-sent identity headers
//! (`ferrygate_core::identity::strip_identity_headers`).
//!
//! Input: lines of `name:value`; a line whose name or value is not a valid
//! header is skipped.

#![no_main]

use ferrygate_core::identity::strip_identity_headers;
use ferrygate_core::respond::AnswerMode;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }

    // A JSON body always gets JSON answers.
    let mode = AnswerMode::of(&headers);
    let json_body = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if json_body {
        assert_eq!(mode, AnswerMode::Json);
    }
    if !headers.contains_key(CONTENT_TYPE) && !headers.contains_key(http::header::ACCEPT) {
        assert_eq!(mode, AnswerMode::Browser);
    }

    // No identity header survives, in any case or with `_` for `-`; nothing else is touched.
    let claims_identity = |name: &HeaderName| {
        let n = name.as_str().replace('_', "-");
        n.len() > "x-ferrygate-".len() && n.starts_with("x-ferrygate-")
    };
    let others = headers.iter().filter(|(n, _)| !claims_identity(n)).count();
    strip_identity_headers(&mut headers);
    assert!(!headers.keys().any(claims_identity), "an identity header survived: {headers:?}");
    assert_eq!(headers.len(), others, "a non-identity header was removed");
});
