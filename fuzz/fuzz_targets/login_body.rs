//! The login body parser (`ferrygate_core::routes::form::read_fields`), as
//! the login, wizard and forgot-password routes use it: never panics; a body
//! over the limit is `payload_too_large`; anything else it refuses is
//! `invalid_input`; what it accepts has at most one value per name, found by
//! `get`.
//!
//! Input: the first byte picks the content type (even: form, odd: JSON), the
//! rest is the body.

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use ferrygate_core::routes::form::{read_fields, FORM, JSON};
use ferrygate_core::LoginError;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(if kind % 2 == 0 { FORM } else { JSON }));
    let parsed = runtime().block_on(read_fields(&headers, Full::new(Bytes::copy_from_slice(body)), LIMIT));
    match parsed {
        Ok(fields) => {
            assert!(body.len() <= LIMIT, "a body over the limit was accepted");
            let _ = fields.get("email");
        }
        Err(LoginError::PayloadTooLarge) => assert!(body.len() > LIMIT, "a body within the limit was too large"),
        Err(LoginError::InvalidInput) => {}
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
});
