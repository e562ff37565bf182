//! Every answer the gateway writes itself: the 303s, the JSON answers, and the
//! error mapping of spec section 3. All of them are `no-store`.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::error::LoginError;

/// Marks a response as Ferrygate's own refusal, naming its code
/// (`forbidden`, `origin_rejected`, `bad_gateway`, …): a browser asking for
/// HTML gets it as a page (`error_page.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnError(pub &'static str);

/// Whether the client wants JSON answers or browser redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerMode {
    Browser,
    Json,
}

impl AnswerMode {
    /// JSON when the request body is JSON or `Accept` prefers `application/json`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let json_body = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| media_type(v).eq_ignore_ascii_case("application/json"));
        if json_body || prefers_json(headers) {
            AnswerMode::Json
        } else {
            AnswerMode::Browser
        }
    }
}

/// `type/subtype` of a Content-Type value, without parameters.
pub(crate) fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

fn prefers_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut json, mut html) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        match media.as_str() {
            "application/json" => json = json.max(q),
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            _ => {}
        }
    }
    json > 0.0 && json > html
}

fn base(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status).header(CACHE_CONTROL, "no-store")
}

fn location(target: &str) -> HeaderValue {
    HeaderValue::from_str(target).unwrap_or_else(|_| {
        tracing::error!("redirect target is not a valid header value; sending the user to /");
        HeaderValue::from_static("/")
    })
}

fn finish(builder: http::response::Builder, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    builder.body(Full::new(body.into())).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"internal_error\n")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// 303 to `target`, with the given cookies.
pub(crate) fn see_other(target: &str, cookies: &[HeaderValue]) -> Response<Full<Bytes>> {
    let mut b = base(StatusCode::SEE_OTHER).header(LOCATION, location(target));
    for c in cookies {
        b = b.header(SET_COOKIE, c.clone());
    }
    finish(b, Bytes::new())
}

/// A successful login: 303 (browser) or `200 {"redirect": …}` (JSON).
pub(crate) fn login_success(target: &str, mode: AnswerMode, cookies: &[HeaderValue]) -> Response<Full<Bytes>> {
    match mode {
        AnswerMode::Browser => see_other(target, cookies),
        AnswerMode::Json => {
            let mut b = base(StatusCode::OK).header(CONTENT_TYPE, "application/json");
            for c in cookies {
                b = b.header(SET_COOKIE, c.clone());
            }
            finish(b, serde_json::json!({ "redirect": target }).to_string())
        }
    }
}

/// A refused login: back to the form with `error=<code>` when the user can act
/// on it, else the bare status; JSON clients always get the status and
/// `{"error", "message"}`.
pub(crate) fn login_failure(err: LoginError, mode: AnswerMode, failure_redirect: &str) -> Response<Full<Bytes>> {
    let mut b = match (mode, err.user_actionable()) {
        (AnswerMode::Browser, true) => {
            let sep = if failure_redirect.contains('?') { '&' } else { '?' };
            return see_other(&format!("{failure_redirect}{sep}error={}", err.code()), &[]);
        }
        _ => base(err.status()),
    };
    if let Some(secs) = err.retry_after_secs() {
        b = b.header(RETRY_AFTER, secs.max(1));
    }
    match mode {
        AnswerMode::Json => finish(
            b.header(CONTENT_TYPE, "application/json"),
            serde_json::json!({ "error": err.code(), "message": err.message() }).to_string(),
        ),
        AnswerMode::Browser => {
            let mut res = finish(b.header(CONTENT_TYPE, "text/plain; charset=utf-8"), format!("{}\n", err.code()));
            res.extensions_mut().insert(OwnError(err.code()));
            res
        }
    }
}

/// The store could not answer (SPEC 4): 503 `session_store_unavailable`, the
/// one answer for a protected page, a returning user, a forward-auth check
/// and a logout alike (a JSON client's login has its own, in JSON).
pub(crate) fn store_unavailable() -> Response<Full<Bytes>> {
    refused(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable", "session_store_unavailable\n")
}

/// Ferrygate's own refusal: `status` with a short text body, marked with
/// its `code` so a browser asking for HTML gets the error page instead
/// (`error_page.rs`).
pub fn refused(status: StatusCode, code: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = text_owned(status, body);
    res.extensions_mut().insert(OwnError(code));
    res
}

/// `202 {"status": "accepted"}`: a request taken, its outcome not told.
pub(crate) fn accepted() -> Response<Full<Bytes>> {
    finish(base(StatusCode::ACCEPTED).header(CONTENT_TYPE, "application/json"), r#"{"status":"accepted"}"#)
}

/// A short plain-text answer.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    finish(base(status).header(CONTENT_TYPE, "text/plain; charset=utf-8"), Bytes::from_static(body.as_bytes()))
}

/// A plain-text answer with a body made at run time.
pub(crate) fn text_owned(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    finish(base(status).header(CONTENT_TYPE, "text/plain; charset=utf-8"), body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn mode_follows_body_type_and_accept() {
        assert_eq!(AnswerMode::of(&headers(&[("content-type", "application/json; charset=utf-8")])), AnswerMode::Json);
        assert_eq!(AnswerMode::of(&headers(&[("accept", "application/json")])), AnswerMode::Json);
        assert_eq!(
            AnswerMode::of(&headers(&[("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")])),
            AnswerMode::Browser
        );
        assert_eq!(AnswerMode::of(&headers(&[("accept", "text/html;q=0.5, application/json")])), AnswerMode::Json);
        assert_eq!(AnswerMode::of(&HeaderMap::new()), AnswerMode::Browser);
    }

    #[test]
    fn browser_failures_redirect_and_keep_the_query() {
        let r = login_failure(LoginError::InvalidCredentials, AnswerMode::Browser, "/login?lang=nl");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], "/login?lang=nl&error=invalid_credentials");
        let r = login_failure(LoginError::OriginRejected, AnswerMode::Browser, "/login");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = login_failure(LoginError::RateLimited { retry_after_secs: 7 }, AnswerMode::Json, "/login");
        assert_eq!(r.headers()[RETRY_AFTER], "7");
    }
}
